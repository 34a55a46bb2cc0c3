package contract

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Refused returns the filters of subs whose SUBACK code, in the answer
// tok (a paho subscribe token, done), is a failure (0x80): paho reports
// such a subscribe as done without error, and a client that took it for
// granted hears nothing on the filter. NATS refuses a QoS 1 subscription
// whose JetStream consumer it cannot make (while a fleet ramps), and any
// broker one its ACL denies.
func Refused(tok paho.Token, subs map[string]byte) map[string]byte {
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	var refused map[string]byte
	for f, code := range st.Result() {
		if qos, asked := subs[f]; asked && code > 2 {
			if refused == nil {
				refused = make(map[string]byte)
			}
			refused[f] = qos
		}
	}
	return refused
}

// SubscribeOptions tune Subscribe; zero values take the defaults.
type SubscribeOptions struct {
	Step       time.Duration // wait for one SUBACK; default 10 s
	MinBackoff time.Duration // between attempts, doubling; default 1 s
	MaxBackoff time.Duration // default 30 s
	// Refused, when set, hears every attempt that left filters refused or
	// unanswered (err: why, nil for a refusal), for a log line or an event.
	Refused func(filters []string, attempt int, err error)
}

// ErrConnectionClosed is Subscribe's answer when the client's connection
// ended before every filter was granted: the next connection subscribes
// anew.
var ErrConnectionClosed = errors.New("contract: connection closed before the subscriptions were granted")

// Subscribe subscribes c to subs and asks again, with backoff, for the
// filters the broker refuses or does not answer in time, until all are
// granted (nil), ctx ends, or c's connection closes (ErrConnectionClosed).
// Call it from a connect handler, in a goroutine of its own: a clean
// session has no subscription until it is asked for.
func Subscribe(ctx context.Context, c paho.Client, subs map[string]byte, h paho.MessageHandler, o SubscribeOptions) error {
	if o.Step <= 0 {
		o.Step = 10 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	want := subs
	backoff := o.MinBackoff
	for attempt := 1; ; attempt++ {
		if !c.IsConnectionOpen() {
			return ErrConnectionClosed
		}
		tok := c.SubscribeMultiple(want, h)
		t := time.NewTimer(o.Step)
		var err error
		select {
		case <-tok.Done():
			if err = tok.Error(); err == nil {
				want = Refused(tok, want)
			}
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			err = errors.New("no SUBACK in time")
		}
		t.Stop()
		if err == nil && len(want) == 0 {
			return nil
		}
		if o.Refused != nil {
			o.Refused(slices.Sorted(maps.Keys(want)), attempt, err)
		}
		// Spread the retries of many clients refused at once.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, o.MaxBackoff)
	}
}
