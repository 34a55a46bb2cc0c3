package feeds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/meter"
)

// Options configure a Controller.
type Options struct {
	Feeds    []Spec
	StateDir string        // where feed state persists; "" keeps it in memory (tests)
	Events   report.Events // nil: events are only logged
	Logger   *slog.Logger
	Now      func() time.Time // clock; nil means time.Now
	Rand     *rand.Rand       // start offsets; nil means a random seed
}

// Controller runs the control loops of all feeds of a device.
type Controller struct {
	log      *slog.Logger
	events   report.Events
	stateDir string
	now      func() time.Time
	rngMu    sync.Mutex
	rng      *rand.Rand
	feeds    []*feedRunner
}

type feedRunner struct {
	mu    sync.Mutex
	f     *feed
	alive atomic.Int64 // unix nanos of the last completed step, for the watchdog
}

// New builds a controller; nothing runs until Run (or Step in tests).
func New(o Options) (*Controller, error) {
	c := &Controller{log: o.Logger, stateDir: o.StateDir, now: o.Now, rng: o.Rand}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.events = o.Events
	if c.events == nil {
		c.events = report.Discard
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rng == nil {
		c.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	for _, s := range o.Feeds {
		f, err := newFeed(c, s)
		if err != nil {
			return nil, err
		}
		r := &feedRunner{f: f}
		r.alive.Store(c.now().UnixNano()) // the watchdog may look before the first step
		c.feeds = append(c.feeds, r)
	}
	return c, nil
}

func (c *Controller) runner(id string) (*feedRunner, error) {
	for _, r := range c.feeds {
		if r.f.spec.ID == id {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownFeed, id)
}

// Run runs every feed's control loop until ctx ends.
func (c *Controller) Run(parent context.Context) error {
	g, ctx := errgroup.WithContext(parent)
	for _, r := range c.feeds {
		r.alive.Store(c.now().UnixNano())
	}
	for _, r := range c.feeds {
		g.Go(func() error { return c.loop(ctx, r) })
	}
	err := g.Wait()
	if parent.Err() != nil && errors.Is(err, parent.Err()) {
		return nil // a clean stop
	}
	return err
}

func (c *Controller) loop(ctx context.Context, r *feedRunner) error {
	t := time.NewTicker(r.f.spec.Period)
	defer t.Stop()
	for {
		snap, err := r.f.spec.Meter.Read(ctx)
		if err != nil && ctx.Err() == nil {
			r.f.log.Debug("meter read failed", "err", err)
		}
		c.pollOverride(r)
		c.Step(ctx, r.f.spec.ID, snap)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Step runs one control period of a feed with a meter snapshot, at the
// controller's clock. Run calls it; tests call it with a fake clock.
func (c *Controller) Step(ctx context.Context, feedID string, snap meter.Snapshot) {
	r, err := c.runner(feedID)
	if err != nil {
		return
	}
	now := c.now()
	r.mu.Lock()
	r.f.step(ctx, now, snap)
	r.mu.Unlock()
	r.alive.Store(now.UnixNano())
}

// Alive reports whether every feed completed a step within maxAge of now:
// what the watchdog needs before it feeds the hardware.
func (c *Controller) Alive(now time.Time, maxAge time.Duration) bool {
	for _, r := range c.feeds {
		if now.Sub(time.Unix(0, r.alive.Load())) > maxAge {
			return false
		}
	}
	return true
}

// ReloadOverrides checks every feed's technician override file now (Run
// does so every control period).
func (c *Controller) ReloadOverrides() {
	for _, r := range c.feeds {
		c.pollOverride(r)
	}
}

// pollOverride reloads a feed's technician override file when it changes.
func (c *Controller) pollOverride(r *feedRunner) {
	f := r.f
	present, changed := f.overrides.changed()
	if !changed {
		return
	}
	var o *Override
	var perr error
	if present {
		b, err := os.ReadFile(f.overrides.path)
		if err == nil {
			o, err = ParseOverride(b, func(id string) bool { return f.circuit(id) != nil })
		}
		perr = err
	}
	now := c.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if perr != nil {
		// A broken file still means a technician is at work: hold everything.
		o = &Override{Reason: "unreadable override file: " + perr.Error(), Hold: true}
	}
	f.override = o
	for _, ci := range f.all {
		ci.tech = modeAuto
		if o == nil || ci.spec.Protected && o.Circuits[ci.spec.ID] == "" {
			continue
		}
		switch o.Circuits[ci.spec.ID] {
		case StateOn:
			ci.tech = modeManualOn
		case StateOff:
			ci.tech = modeManualOff
		}
	}
	fields := report.Fields{"active": o != nil}
	if o != nil {
		fields["reason"], fields["hold"], fields["circuits"] = o.Reason, o.Hold, o.Circuits
	}
	sev := report.Warning
	if o == nil {
		sev = report.Info
	}
	f.emit(now, EventTechnician, sev, fields)
}

// SetThrottle accepts a throttle.set order: it replaces any cap on the feed.
func (c *Controller) SetThrottle(_ context.Context, o ThrottleOrder) error {
	if err := o.Validate(); err != nil {
		return err
	}
	r, err := c.runner(o.Feed)
	if err != nil {
		return err
	}
	now := c.now()
	c.rngMu.Lock()
	off := jitter(c.rng, r.f.spec.StartJitter)
	c.rngMu.Unlock()
	start := o.From
	if start.IsZero() {
		start = now
	}
	if !o.Until.IsZero() && !o.Until.After(now) {
		return fmt.Errorf("%w: until %s is already past", ErrBadOrder, o.Until.Format(time.RFC3339))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.f
	f.order = &activeOrder{ThrottleOrder: o, Offset: Duration(off), Start: start.Add(off), Accepted: now}
	f.overSince, f.underSince = time.Time{}, time.Time{}
	f.emit(now, EventThrottleChanged, report.Info, report.Fields{"change": ChangeSet, "cap_kw": o.CapKW, "from": start, "until": o.Until,
		"ramp": time.Duration(o.Ramp).String(), "offset": off.String()})
	f.persist(now)
	return nil
}

// ClearThrottle removes the feed's cap; circuits come back as dwell allows.
func (c *Controller) ClearThrottle(_ context.Context, feedID string) error {
	r, err := c.runner(feedID)
	if err != nil {
		return err
	}
	now := c.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	had := r.f.order != nil
	r.f.order = nil
	r.f.emit(now, EventThrottleChanged, report.Info, report.Fields{"change": ChangeCleared, "why": "throttle.clear", "had_cap": had})
	r.f.persist(now)
	return nil
}

// SetRelay applies a relay.set. A manual on/off pins the circuit (the
// controller leaves it alone) until "auto". It never breaks the dwell rules:
// a switch they forbid now is refused with ErrInterlock.
func (c *Controller) SetRelay(ctx context.Context, o RelayOrder) error {
	if err := o.Validate(); err != nil {
		return err
	}
	r, err := c.runner(o.Feed)
	if err != nil {
		return err
	}
	now := c.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.f
	if !f.booted {
		f.restore(ctx, now)
	}
	ci := f.circuit(o.Circuit)
	if ci == nil {
		return fmt.Errorf("%w: %s/%s", ErrUnknownCircuit, o.Feed, o.Circuit)
	}
	refuse := func(why string, err error) error {
		f.emit(now, EventInterlock, report.Warning, report.Fields{"circuit": ci.spec.ID, "command": "relay.set",
			"state": o.State, "why": why})
		return err
	}
	if ci.tech != modeAuto || f.override != nil && f.override.Hold {
		return refuse("technician override", fmt.Errorf("feeds: %s/%s: %w", o.Feed, o.Circuit, ErrTechnician))
	}
	if ci.spec.Protected && !o.Override {
		return refuse("protected", fmt.Errorf("feeds: %s/%s: %w", o.Feed, o.Circuit, ErrProtected))
	}
	if o.State == StateAuto {
		if ci.spec.Protected {
			return nil // protected circuits are never under automatic control
		}
		ci.mode = modeAuto
		f.dirty = true
		f.persist(now)
		f.emit(now, EventRelaySwitched, report.Info, report.Fields{"circuit": ci.spec.ID, "mode": "auto", "by": "command"})
		return nil
	}
	on := o.State == StateOn
	if why := f.blocked(ci, on, now); why != whyNoState {
		return refuse(why, fmt.Errorf("feeds: %s/%s: %s (next allowed %s): %w", o.Feed, o.Circuit, why,
			f.nextAllowed(ci, now).Format(time.RFC3339), ErrInterlock))
	}
	if ci.spec.Protected {
		f.emit(now, EventProtectedOp, report.Critical, report.Fields{"circuit": ci.spec.ID, "state": o.State, "reason": o.Reason})
	}
	snap := f.lastGood
	good := snap.Usable(now, f.spec.StaleAfter)
	if err := f.switchTo(ctx, ci, on, now, "command", snap.Power, good); err != nil {
		return err
	}
	ci.drift = false
	if !ci.spec.Protected {
		ci.mode = modeManualOff
		if on {
			ci.mode = modeManualOn
		}
	}
	f.persist(now)
	f.dirty = false
	return nil
}
