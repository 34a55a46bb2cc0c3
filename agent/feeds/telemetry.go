package feeds

import "time"

// CircuitTelemetry is the state of one circuit.
type CircuitTelemetry struct {
	ID          string    `json:"id"`
	On          bool      `json:"on"`
	Protected   bool      `json:"protected,omitempty"`
	Priority    int       `json:"priority,omitempty"`
	Mode        string    `json:"mode"` // auto | on | off (manual) | technician-on | technician-off
	Drift       bool      `json:"drift,omitempty"`
	LoadKW      float64   `json:"load_kw,omitempty"` // learned draw
	OpsLastHour int       `json:"ops_last_hour"`
	NextAllowed time.Time `json:"next_allowed,omitzero"` // when it may next change state, if later than now
}

// FeedTelemetry is the state of one feed. PowerKW is nil when the reading
// is unknown (stale or bad): never zero.
type FeedTelemetry struct {
	Feed       string             `json:"feed"`
	Time       time.Time          `json:"time"`
	PowerKW    *float64           `json:"power_kw"`
	ReadingAt  time.Time          `json:"reading_at,omitzero"`
	MeterLost  bool               `json:"meter_lost,omitempty"`
	CapKW      *float64           `json:"cap_kw"`          // effective cap now (ramp applied), nil without one
	Order      *ThrottleOrder     `json:"order,omitempty"` // the accepted order, active or pending
	CapStart   time.Time          `json:"cap_start,omitzero"`
	Unmet      string             `json:"unmet,omitempty"` // why the cap cannot be met, while it cannot
	Technician *Override          `json:"technician,omitempty"`
	Circuits   []CircuitTelemetry `json:"circuits"`
}

// Telemetry returns a snapshot of every feed, for the MQTT link to publish.
func (c *Controller) Telemetry() []FeedTelemetry {
	now := c.now()
	out := make([]FeedTelemetry, 0, len(c.feeds))
	for _, r := range c.feeds {
		r.mu.Lock()
		f := r.f
		t := FeedTelemetry{Feed: f.spec.ID, Time: now, MeterLost: f.meterLost, Unmet: f.unmet, Technician: f.override}
		if f.lastGood.Usable(now, f.spec.StaleAfter) {
			v := kw(f.lastGood.Power)
			t.PowerKW, t.ReadingAt = &v, f.lastGood.Time
		}
		if o := f.order; o != nil {
			oc := o.ThrottleOrder
			t.Order, t.CapStart = &oc, o.Start
			if o.Started {
				capW, _ := f.effectiveCap(now)
				v := kw(capW)
				t.CapKW = &v
			}
		}
		for _, ci := range f.all {
			ct := CircuitTelemetry{ID: ci.spec.ID, On: ci.on, Protected: ci.spec.Protected, Priority: ci.spec.Priority,
				Mode: modeNames[ci.mode], Drift: ci.drift, LoadKW: kw(ci.load), OpsLastHour: ci.opsInHour(now)}
			if ci.tech != modeAuto {
				ct.Mode = "technician-" + modeNames[ci.tech]
			}
			if !ci.spec.Protected {
				if na := f.nextAllowed(ci, now); na.After(now) {
					ct.NextAllowed = na
				}
			}
			t.Circuits = append(t.Circuits, ct)
		}
		r.mu.Unlock()
		out = append(out, t)
	}
	return out
}
