package feeds_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/feeds"
)

func TestDecodeThrottleSet(t *testing.T) {
	from := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	cases := []struct {
		args string
		want feeds.ThrottleOrder
		ok   bool
	}{
		{`{"feed":"f","cap_kw":40}`, feeds.ThrottleOrder{Feed: "f", CapKW: 40}, true},
		{`{"feed":"f","cap_kw":40,"from":"2026-12-01T18:00:00Z","until":"2026-12-01T20:00:00Z","ramp":"15m"}`,
			feeds.ThrottleOrder{Feed: "f", CapKW: 40, From: from, Until: from.Add(2 * time.Hour), Ramp: feeds.Duration(15 * time.Minute)}, true},
		{`{"feed":"f","cap_kw":40,"ramp":900}`, feeds.ThrottleOrder{Feed: "f", CapKW: 40, Ramp: feeds.Duration(15 * time.Minute)}, true},
		{`{"feed":"f","cap_kw":-1}`, feeds.ThrottleOrder{}, false},
		{`{"feed":"","cap_kw":1}`, feeds.ThrottleOrder{}, false},
		{`{"feed":"f","cap_kw":1,"colour":"red"}`, feeds.ThrottleOrder{}, false},
		{`{"feed":"f","cap_kw":1,"from":"2026-12-01T18:00:00Z","until":"2026-12-01T17:00:00Z"}`, feeds.ThrottleOrder{}, false},
		{`{"feed":"f","cap_kw":1,"ramp":"soon"}`, feeds.ThrottleOrder{}, false},
		{`{"feed":"f","cap_kw":1} {}`, feeds.ThrottleOrder{}, false},
	}
	for _, c := range cases {
		got, err := feeds.DecodeThrottleSet([]byte(c.args))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.args, err, c.ok)
			continue
		}
		if c.ok && got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.args, got, c.want)
		}
		if !c.ok && !errors.Is(err, feeds.ErrBadOrder) {
			t.Errorf("%s: err %v is not ErrBadOrder", c.args, err)
		}
	}
}

func TestDecodeRelaySet(t *testing.T) {
	if _, err := feeds.DecodeRelaySet([]byte(`{"feed":"f","circuit":"c","state":"off","override":true}`)); !errors.Is(err, feeds.ErrBadOrder) {
		t.Errorf("override without reason accepted: %v", err)
	}
	if _, err := feeds.DecodeRelaySet([]byte(`{"feed":"f","circuit":"c","state":"half"}`)); !errors.Is(err, feeds.ErrBadOrder) {
		t.Errorf("state half accepted: %v", err)
	}
	o, err := feeds.DecodeRelaySet([]byte(`{"feed":"f","circuit":"c","state":"on","override":true,"reason":"storm"}`))
	if err != nil || o.State != feeds.StateOn || o.Reason != "storm" {
		t.Errorf("good order: %+v %v", o, err)
	}
}

func FuzzDecodeOrders(f *testing.F) {
	f.Add([]byte(`{"feed":"f","cap_kw":40,"from":"2026-12-01T18:00:00Z","ramp":"15m"}`))
	f.Add([]byte(`{"feed":"f","circuit":"c","state":"off","override":true,"reason":"x"}`))
	f.Add([]byte(`{"reason":"line work","hold":true,"circuits":{"c1":"off"}}`))
	f.Add([]byte(`{"feed":"f","cap_kw":1e400}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if o, err := feeds.DecodeThrottleSet(b); err == nil && (o.Feed == "" || !(o.CapKW >= 0) || o.Ramp < 0) {
			t.Fatalf("accepted invalid throttle order %+v", o)
		}
		if o, err := feeds.DecodeRelaySet(b); err == nil && o.Validate() != nil {
			t.Fatalf("accepted invalid relay order %+v", o)
		}
		if o, err := feeds.ParseOverride(b, func(id string) bool { return id == "c1" }); err == nil {
			for id, st := range o.Circuits {
				if id != "c1" || (st != feeds.StateOn && st != feeds.StateOff) {
					t.Fatalf("accepted override %+v", o)
				}
			}
		}
	})
}

// TestCommandsThroughDispatcher: the MQTT command path reaches the controller.
func TestCommandsThroughDispatcher(t *testing.T) {
	p := newPlant(t, 11, "", defaultCircuits, nil)
	var d command.Dispatcher
	if err := p.ctl.RegisterCommands(&d); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(typ, args string) error {
		_, err := d.Dispatch(ctx, &command.Command{Payload: command.Payload{Type: typ, Args: []byte(args)}})
		return err
	}
	if err := run(command.ThrottleSet, `{"feed":"tachileik-1","cap_kw":10.5}`); err != nil {
		t.Fatal(err)
	}
	if tel := p.telemetry(); tel.Order == nil || tel.Order.CapKW != 10.5 {
		t.Fatalf("throttle.set did not reach the controller: %+v", tel.Order)
	}
	if err := run(command.ThrottleSet, `{"feed":"nowhere","cap_kw":1}`); !errors.Is(err, feeds.ErrUnknownFeed) {
		t.Fatalf("unknown feed: %v", err)
	}
	if err := run(command.RelaySet, `{"feed":"tachileik-1","circuit":"hospital","state":"off"}`); !errors.Is(err, feeds.ErrProtected) {
		t.Fatalf("relay.set on protected: %v", err)
	}
	if err := run(command.ThrottleClear, `{"feed":"tachileik-1"}`); err != nil {
		t.Fatal(err)
	}
	if tel := p.telemetry(); tel.Order != nil {
		t.Fatal("throttle.clear did not clear")
	}
}

// TestRampAndStartOffset: the cap starts after the randomised offset and
// ramps down linearly from the power at its start.
func TestRampAndStartOffset(t *testing.T) {
	p := newPlant(t, 12, "", defaultCircuits, func(s *feeds.Spec) { s.StartJitter = time.Minute })
	err := p.ctl.SetThrottle(context.Background(), feeds.ThrottleOrder{Feed: p.spec.ID, CapKW: 5, Ramp: feeds.Duration(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	tel := p.telemetry()
	off := tel.CapStart.Sub(p.now)
	if off < 0 || off >= time.Minute {
		t.Fatalf("start offset %v outside [0, 1m)", off)
	}
	for p.now.Add(p.spec.Period).Before(tel.CapStart) {
		p.tick()
		if p.telemetry().CapKW != nil {
			t.Fatal("cap active before its start offset")
		}
	}
	p.tick()
	first := p.telemetry().CapKW
	if first == nil || *first < 14 {
		t.Fatalf("cap at start of ramp %v, want about the 15 kW baseline", first)
	}
	for range 300 {
		p.tick()
	}
	mid := *p.telemetry().CapKW
	if mid > 11 || mid < 9 {
		t.Fatalf("cap halfway through the ramp = %v, want about 10", mid)
	}
	for range 400 {
		p.tick()
	}
	if got := *p.telemetry().CapKW; got != 5 {
		t.Fatalf("cap after the ramp = %v, want 5", got)
	}
}
