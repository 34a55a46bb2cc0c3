package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/testbench/bench"
	"linkguard.dev/linkguard/testbench/sim"
	"periph.io/x/conn/v3/physic"
)

// Report is the outcome of one scenario.
type Report struct {
	Name    string       `json:"name"`
	OK      bool         `json:"ok"`
	Started time.Time    `json:"started"`
	Seconds float64      `json:"seconds"`
	Error   string       `json:"error,omitempty"` // the bench did not start
	Steps   []StepReport `json:"steps"`
}

// StepReport is the outcome of one step.
type StepReport struct {
	N        int            `json:"n"`
	Name     string         `json:"name,omitempty"`
	Do       string         `json:"do"`
	Device   string         `json:"device,omitempty"`
	OK       bool           `json:"ok"`
	Error    string         `json:"error,omitempty"`
	Seconds  float64        `json:"seconds"`
	Observed map[string]any `json:"observed,omitempty"`
}

// Run runs s in dir (its bench's working directory). A failed step ends
// the scenario; the report says which and why.
func Run(ctx context.Context, s *Scenario, dir string, log *slog.Logger) *Report {
	rep := &Report{Name: s.Name, Started: time.Now().UTC()}
	defer func() { rep.Seconds = time.Since(rep.Started).Seconds() }()
	b, err := bench.Start(ctx, bench.Options{Dir: dir, Routers: s.Routers, Feeds: s.Feeds, TelemetryEvery: 500 * time.Millisecond, Logger: log})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer b.Close()
	r := &runner{b: b, c: b.Console}
	defer r.close()
	// Every scenario starts from a fleet that is up and enforcing serial 1.
	if err := b.WaitUp(ctx, 1, 15*time.Second); err != nil {
		rep.Error = "bench did not come up: " + err.Error()
		return rep
	}
	rep.OK = true
	for i, st := range s.Steps {
		t0 := time.Now()
		sr := StepReport{N: i + 1, Name: st.Name, Do: st.Do, Device: st.Device}
		obs, err := r.step(ctx, st)
		sr.Observed, sr.Seconds = obs, time.Since(t0).Seconds()
		sr.OK = err == nil
		if err != nil {
			sr.Error = err.Error()
			rep.OK = false
		}
		rep.Steps = append(rep.Steps, sr)
		if err != nil {
			break
		}
	}
	return rep
}

type runner struct {
	b       *bench.Bench
	c       *console.Console
	bundles *bundleServer // started by the first push-update
}

func (r *runner) close() {
	if r.bundles != nil {
		r.bundles.close()
	}
}

// allUp checks that every device reported and enforces serial or later;
// with onlineOnly, devices that are down are left out.
func (r *runner) allUp(serial uint64, onlineOnly bool) error {
	devs := r.c.Devices()
	if len(devs) < len(r.b.Agents()) {
		return fmt.Errorf("%d of %d devices reported", len(devs), len(r.b.Agents()))
	}
	for _, d := range devs {
		if onlineOnly && !d.Online {
			continue
		}
		if !d.Online || d.PolicySerial < serial {
			return fmt.Errorf("%s: online %v, serial %d", d.ID, d.Online, d.PolicySerial)
		}
		if d.TelemetryAt.IsZero() {
			return fmt.Errorf("%s: no telemetry yet", d.ID)
		}
	}
	return nil
}

// poll checks cond until it holds, ctx ends or within passes.
func (r *runner) poll(ctx context.Context, within time.Duration, cond func() error) error {
	return r.b.Poll(ctx, within, cond)
}

func (r *runner) lastEventN() int64 {
	ev := r.c.Events(console.EventFilter{Limit: 1})
	if len(ev) == 0 {
		return 0
	}
	return ev[0].N
}

func (r *runner) denied(dev string) uint64 {
	d, _ := r.c.Device(dev)
	if d.Filter == nil {
		return 0
	}
	return d.Filter.Denied
}

func (r *runner) step(ctx context.Context, st Step) (map[string]any, error) {
	obs := map[string]any{}
	evStart, deniedBefore := r.lastEventN(), r.denied(st.Device)
	var act *console.Pending
	var err error
	agent, _ := r.b.Agent(st.Device)
	needDevice := func() error {
		if agent == nil {
			return fmt.Errorf("%s needs a device", st.Do)
		}
		return nil
	}
	switch st.Do {
	case "wait":
		select {
		case <-ctx.Done():
			return obs, ctx.Err()
		case <-time.After(time.Duration(st.For)):
		}
	case "expect":
	case "traffic":
		rt, ok := r.b.Routers[st.Device]
		if !ok {
			return obs, fmt.Errorf("traffic needs a router, %q is not one", st.Device)
		}
		rt.Send(max(1, st.Rounds))
	case "revoke":
		act, err = r.b.Revoke(ctx, st.Approval)
	case "approve":
		act, err = r.b.Approve(ctx, console.NewApproval{ID: st.Approval})
	case "push-policy":
		// A fleet-wide policy update signed by the committee: the console
		// approves a new link for it.
		act, err = r.b.Approve(ctx, console.NewApproval{ID: st.Approval, Holder: "scenario", Remote: []string{"100.64.0.0/24"}})
	case "throttle":
		args := map[string]any{"feed": st.Feed, "cap_kw": st.CapKW}
		if st.Ramp > 0 {
			args["ramp"] = time.Duration(st.Ramp).String()
		}
		if st.Until > 0 {
			args["until"] = time.Now().Add(time.Duration(st.Until)).UTC().Format(time.RFC3339Nano)
		}
		act, err = r.b.Command(ctx, st.Device, "throttle.set", args)
	case "relay":
		act, err = r.b.Command(ctx, st.Device, "relay.set", map[string]any{"feed": st.Feed, "circuit": st.Circuit, "state": st.State})
	case "push-update":
		var args map[string]any
		if args, err = r.pushUpdate(st); err == nil {
			obs["bundle_sha256"] = args["sha256"]
			act, err = r.b.Command(ctx, st.Device, "update.fetch", args)
		}
	case "clear-throttle":
		act, err = r.b.Command(ctx, st.Device, "throttle.clear", map[string]any{"feed": st.Feed})
	case "rebirth":
		act, err = r.b.Command(ctx, st.Device, "rebirth", nil)
	case "kill":
		if err = needDevice(); err == nil {
			err = agent.Kill()
		}
	case "stop":
		if err = needDevice(); err == nil {
			err = agent.Stop()
		}
	case "start":
		if err = needDevice(); err == nil {
			err = agent.Start(r.b.Context())
		}
	case "kill-broker":
		r.b.Broker.Pause()
	case "start-broker":
		err = r.b.Broker.Resume()
	case "corrupt-policy":
		if err = needDevice(); err == nil {
			err = atomicfile.Write(agent.PolicyFile(), []byte(`{"payloadType":"application/vnd.linkguard.policy+yaml","payload":"c2VyaWFsOiA5OTk5","signatures":[{"keyid":"x","sig":"AAAA"}]}`), 0o644)
		}
	}
	if err != nil {
		return obs, err
	}
	if act != nil {
		obs["action"] = act.ID
		if act.Serial != 0 {
			obs["serial"] = act.Serial
		}
	}
	if st.Expect == nil {
		return obs, nil
	}
	within := time.Duration(st.Within)
	if within <= 0 {
		within = 10 * time.Second
	}
	e := st.Expect
	err = r.poll(ctx, within, func() error {
		d, known := r.c.Device(st.Device)
		if st.Device != "" && !known && (e.Online != nil || e.PolicySerial != nil || e.DeniedRises || e.UnderCap) {
			return fmt.Errorf("%s has not reported", st.Device)
		}
		if e.Connected != nil {
			if up, _ := r.c.Connected(); up != *e.Connected {
				return fmt.Errorf("console connected %v", up)
			}
		}
		if e.Online != nil && d.Online != *e.Online {
			return fmt.Errorf("%s online %v, want %v", d.ID, d.Online, *e.Online)
		}
		if e.PolicySerial != nil && d.PolicySerial != *e.PolicySerial {
			return fmt.Errorf("%s enforces serial %d, want %d", d.ID, d.PolicySerial, *e.PolicySerial)
		}
		if e.AllEnforce != nil {
			if err := r.allUp(*e.AllEnforce, true); err != nil {
				return err
			}
		}
		if e.DeniedRises || e.DeniedAbove != nil {
			now := r.denied(st.Device)
			obs["denied_before"], obs["denied"] = deniedBefore, now
			if e.DeniedRises && now <= deniedBefore {
				return fmt.Errorf("%s denied %d, not above %d", st.Device, now, deniedBefore)
			}
			if e.DeniedAbove != nil && now <= *e.DeniedAbove {
				return fmt.Errorf("%s denied %d, not above %d", st.Device, now, *e.DeniedAbove)
			}
		}
		if e.ApprovalPkts != "" {
			found := false
			if d.Filter != nil {
				for _, a := range d.Filter.Approvals {
					found = found || (a.ID == e.ApprovalPkts && a.Packets > 0)
				}
			}
			if !found {
				return fmt.Errorf("%s reports no traffic under %s", st.Device, e.ApprovalPkts)
			}
		}
		if e.Event != "" {
			ev := r.c.Events(console.EventFilter{Device: st.Device, Type: e.Event, After: evStart})
			if len(ev) == 0 {
				return fmt.Errorf("no %s event from %s yet", e.Event, st.Device)
			}
			obs["event"] = ev[len(ev)-1].Fields
		}
		if e.Result != "" {
			if act == nil {
				return errors.New("result expected from a step that sent no command")
			}
			res := r.result(act.ID, st.Device)
			if res == nil {
				return fmt.Errorf("no result from %s for %s", st.Device, act.ID)
			}
			obs["result"] = res
			got := "ok"
			if !res.OK {
				got = res.Reason
			}
			if got != e.Result {
				return fmt.Errorf("result %q (%s), want %q", got, res.Error, e.Result)
			}
		}
		if e.UnderCap || e.CapKW != nil {
			if len(d.Feeds) == 0 {
				return fmt.Errorf("%s reports no feed", st.Device)
			}
			f := d.Feeds[0]
			obs["power_kw"], obs["cap_kw"] = f.PowerW/1000, f.CapW/1000
			if e.CapKW != nil && f.CapW != *e.CapKW*1000 {
				return fmt.Errorf("%s cap %.1f kW, want %.1f", d.ID, f.CapW/1000, *e.CapKW)
			}
			if e.UnderCap && (f.CapW == 0 || f.PowerW > f.CapW) {
				return fmt.Errorf("%s power %.1f kW over cap %.1f kW", d.ID, f.PowerW/1000, f.CapW/1000)
			}
			if e.UnderCap {
				// The truth on the wire too, not only what the agent says.
				if fd, ok := r.b.Feeds[st.Device]; ok {
					obs["true_power_kw"] = float64(fd.Power()) / float64(physic.KiloWatt)
				}
			}
		}
		if e.Circuits != nil {
			if err := r.circuits(d, e.Circuits); err != nil {
				return err
			}
		}
		if e.Firmware != nil {
			fd, ok := r.b.Feeds[st.Device]
			if !ok {
				return fmt.Errorf("firmware expected from %q, which has no slots", st.Device)
			}
			got, err := installed(fd.SlotRoot())
			if err != nil {
				return err
			}
			obs["firmware"] = got
			if got != *e.Firmware {
				return fmt.Errorf("%s has firmware %q installed, want %q", st.Device, got, *e.Firmware)
			}
		}
		return nil
	})
	return obs, err
}

// circuits checks the feed's circuits as reported and on the board.
func (r *runner) circuits(d console.Device, want map[string]bool) error {
	if len(d.Feeds) == 0 {
		return fmt.Errorf("%s reports no feed", d.ID)
	}
	fd := r.b.Feeds[d.ID]
	for id, on := range want {
		i := slices.IndexFunc(d.Feeds[0].Circuits, func(c console.Circuit) bool { return c.ID == id })
		if i < 0 {
			return fmt.Errorf("%s reports no circuit %q", d.ID, id)
		}
		if got := d.Feeds[0].Circuits[i].On; got != on {
			return fmt.Errorf("%s reports %s on=%v, want %v", d.ID, id, got, on)
		}
		if fd == nil {
			continue
		}
		j := slices.IndexFunc(sim.DemoCircuits, func(c sim.FeedCircuit) bool { return c.ID == id })
		if j >= 0 && fd.Coil(sim.DemoCircuits[j].Coil) != on {
			return fmt.Errorf("%s: relay of %s is on=%v on the board, want %v", d.ID, id, !on, on)
		}
	}
	return nil
}

func (r *runner) result(cmdID, dev string) *struct {
	OK            bool
	Reason, Error string
} {
	for _, a := range r.c.Actions() {
		if a.ID != cmdID {
			continue
		}
		for _, res := range a.Results {
			if res.Device == dev {
				return &struct {
					OK            bool
					Reason, Error string
				}{res.OK, res.Reason, res.Error}
			}
		}
	}
	return nil
}

// Summary writes a readable account of reps.
func Summary(w io.Writer, reps []*Report) {
	pass := 0
	for _, rep := range reps {
		mark := "PASS"
		if rep.OK {
			pass++
		} else {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s  %s (%.1fs)\n", mark, rep.Name, rep.Seconds)
		if rep.Error != "" {
			fmt.Fprintf(w, "      %s\n", rep.Error)
		}
		for _, s := range rep.Steps {
			m := "ok "
			if !s.OK {
				m = "ERR"
			}
			what := s.Do
			if s.Device != "" {
				what += " " + s.Device
			}
			if s.Name != "" {
				what = s.Name + ": " + what
			}
			fmt.Fprintf(w, "  %s %2d. %-50s %5.2fs%s\n", m, s.N, what, s.Seconds, observed(s))
			if s.Error != "" {
				fmt.Fprintf(w, "         %s\n", s.Error)
			}
		}
	}
	fmt.Fprintf(w, "%d of %d scenarios passed\n", pass, len(reps))
}

func observed(s StepReport) string {
	var parts []string
	for _, k := range []string{"serial", "denied_before", "denied", "power_kw", "cap_kw"} {
		if v, ok := s.Observed[k]; ok {
			if f, isF := v.(float64); isF {
				parts = append(parts, fmt.Sprintf("%s=%.1f", k, f))
			} else {
				parts = append(parts, fmt.Sprintf("%s=%v", k, v))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "  (" + strings.Join(parts, " ") + ")"
}

// WriteJSON writes the reports to path.
func WriteJSON(path string, reps []*Report) error {
	b, err := json.MarshalIndent(reps, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
