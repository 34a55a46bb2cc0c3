package feeds

import "time"

// WatchdogAge is how long the watchdog waits for a control step before it
// stops feeding: ten periods of the slowest feed, at least 30 s (a meter
// read that times out with retries may take a few seconds).
func WatchdogAge(specs []Spec) time.Duration {
	d := 30 * time.Second
	for _, s := range specs {
		d = max(d, 10*s.Period)
	}
	return d
}
