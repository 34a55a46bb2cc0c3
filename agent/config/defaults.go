package config

import (
	"time"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
)

// Defaults a device gets for what its file leaves out.
const (
	DefaultStateDir       = "/var/lib/linkguard"
	DefaultTelemetryEvery = 10 * time.Second
	DefaultQueueMB        = 32
	DefaultEvidenceMB     = 64
	DefaultMaxFlows       = 65536 // ~7.5 MB of flow table: RSS 31 MB with a 100k-prefix policy, 39 MB with both bridge ports open (BenchmarkMemory100k, BenchmarkMemory100kPorts)
	DefaultBaud           = 9600
	DefaultBusTimeout     = 500 * time.Millisecond
	DefaultBusRetries     = 2
	DefaultPickupGrace    = 10 * time.Second // the filter's own default (linkfilter.DefaultPickupGrace)
)

func (c *Config) defaults() {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Policy.Threshold == 0 {
		c.Policy.Threshold = 1
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if l := c.Links; l != nil {
		if l.Evidence.MaxMB == 0 {
			l.Evidence.MaxMB = DefaultEvidenceMB
		}
		if l.Evidence.Dir == "" {
			l.Evidence.Dir = c.StateDir + "/evidence"
		}
		if l.MaxFlows == 0 {
			l.MaxFlows = DefaultMaxFlows
		}
		if l.Fail == "" {
			l.Fail = "closed"
		}
		if l.Ingress == "" {
			l.Ingress = "strict"
		}
		if l.LinkLocal == nil {
			ll := packet.DefaultLinkLocal.Names()
			l.LinkLocal = &ll
		}
		if l.PickupGrace == nil {
			g := DefaultPickupGrace
			l.PickupGrace = &g
		}
		if l.MaxEncap == 0 {
			l.MaxEncap = packet.DefaultMaxEncap
		}
	}
	if m := c.MQTT; m != nil {
		if m.TelemetryEvery == 0 {
			m.TelemetryEvery = DefaultTelemetryEvery
		}
		if m.Queue.MaxMB == 0 {
			m.Queue.MaxMB = DefaultQueueMB
		}
		if m.Keepalive == 0 {
			m.Keepalive = 30 * time.Second
		}
	}
	for i := range c.Buses {
		b := &c.Buses[i]
		if b.Baud == 0 {
			b.Baud = DefaultBaud
		}
		if b.Parity == "" {
			b.Parity = "none"
		}
		if b.StopBits == 0 {
			b.StopBits = 1
		}
		if b.Timeout == 0 {
			b.Timeout = DefaultBusTimeout
		}
		if b.Retries == nil {
			b.Retries = new(int(DefaultBusRetries))
		}
	}
	for i := range c.Feeds {
		f := &c.Feeds[i]
		if f.MinOn == 0 {
			f.MinOn = 60 * time.Second
		}
		if f.MinOff == 0 {
			f.MinOff = 120 * time.Second
		}
		if f.MaxOpsPerHour == 0 {
			f.MaxOpsPerHour = 12
		}
		if f.StaleAfter == 0 {
			f.StaleAfter = 10 * time.Second
		}
		if f.SafeState == "" {
			f.SafeState = "restore"
		}
		if f.Confirm == 0 {
			f.Confirm = 5 * time.Second
		}
		if f.Period == 0 {
			f.Period = time.Second
		}
		if f.StartJitter == 0 {
			f.StartJitter = 30 * time.Second
		}
		if f.Readback == 0 {
			f.Readback = 30 * time.Second
		}
		if f.Meter.WordOrder == "" {
			f.Meter.WordOrder = "big"
		}
	}
	if u := c.Update; u != nil {
		if u.MaxFetchMB == 0 {
			u.MaxFetchMB = 64
		}
	}
	if w := c.Watchdog; w != nil {
		if w.Device == "" {
			w.Device = "/dev/watchdog"
		}
		if w.Every == 0 {
			w.Every = 5 * time.Second
		}
	}
}

// Bus returns the settings of the named serial port: its entry in buses, or
// the defaults (9600 8N1, 500ms, 2 retries) when it is not listed.
func (c *Config) Bus(port string) Bus {
	for _, b := range c.Buses {
		if b.Port == port {
			return b
		}
	}
	return Bus{Port: port, Baud: DefaultBaud, Parity: "none", StopBits: 1, Timeout: DefaultBusTimeout, Retries: new(int(DefaultBusRetries))}
}
