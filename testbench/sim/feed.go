package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"periph.io/x/conn/v3/physic"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/modbus"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
	"linkguard.dev/linkguard/policy/store"
)

// FeedID is the simulated relay controller's one feed.
const FeedID = "feed-1"

// FeedCircuit is one circuit of the simulated feed.
type FeedCircuit struct {
	ID        string
	Coil      int
	Load      physic.Power
	Protected bool
	Priority  int // higher: shed last
}

// DemoCircuits are the simulated feed's circuits: 33 kW with the base load.
var DemoCircuits = []FeedCircuit{
	{"hospital", 0, 8 * physic.KiloWatt, true, 0},
	{"water-pumps", 1, 6 * physic.KiloWatt, false, 3},
	{"market", 2, 5 * physic.KiloWatt, false, 2},
	{"industrial", 3, 12 * physic.KiloWatt, false, 1},
}

const (
	meterSlave = 1
	boardSlave = 2
	regTotalP  = 0x0034
)

// Feed is a simulated relay controller: an SDM630-style meter and a coil
// relay board (modbussim) on a pty, and an agent holding the feed.
type Feed struct {
	*Agent
	sim    *modbussim.Sim
	f      *feedPart
	cancel context.CancelFunc
}

type feedPart struct {
	tty string
	mu  sync.Mutex
	cur *holder // of the current run
}

// NewFeed starts the simulated devices (they live until CloseHardware) and
// makes the agent; Start runs it.
func NewFeed(ctx context.Context, opt AgentOptions) (*Feed, error) {
	cfg := modbussim.Config{MeterSlave: meterSlave, BoardSlave: boardSlave, Coils: 8, CoilsOn: true,
		BaseLoad: 2 * physic.KiloWatt, Seed: 7, Logger: opt.Logger}
	for i, c := range DemoCircuits {
		cfg.Circuits = append(cfg.Circuits, modbussim.Circuit{ID: c.ID, Coil: c.Coil, Phase: i % 3, Load: c.Load, Noise: 200 * physic.Watt})
	}
	s := modbussim.New(cfg)
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	tty, err := s.Start(hctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sim: feed %s: %w", opt.ID, err)
	}
	p := &feedPart{tty: tty}
	a, err := newAgent(opt, p)
	if err != nil {
		cancel()
		return nil, err
	}
	return &Feed{Agent: a, sim: s, f: p, cancel: cancel}, nil
}

// CloseHardware stops the simulated meter and board.
func (f *Feed) CloseHardware() { f.cancel() }

// Power is the feed's true draw now (the simulator's mean, without noise).
func (f *Feed) Power() physic.Power { return f.sim.Power() }

// Coil is a relay's true state.
func (f *Feed) Coil(i int) bool { return f.sim.Coil(i) }

// Cap is the current run's cap (0: none).
func (f *Feed) Cap() physic.Power {
	f.f.mu.Lock()
	h := f.f.cur
	f.f.mu.Unlock()
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cap
}

func (p *feedPart) kind() string { return "relay" }

func (p *feedPart) attach(link *mqttlink.Link, _ *store.Store, log *slog.Logger) (func(context.Context) error, error) {
	h := &holder{events: link, log: log.With("part", "feed"), circuits: DemoCircuits, lastChange: map[string]time.Time{},
		on: map[string]bool{}, shedLoad: map[string]float64{}, minDwell: 2 * time.Second, hyst: 1000, period: 300 * time.Millisecond}
	if err := link.Register(command.ThrottleSet, command.HandlerFunc(h.throttleSet)); err != nil {
		return nil, err
	}
	if err := link.Register(command.ThrottleClear, command.HandlerFunc(h.throttleClear)); err != nil {
		return nil, err
	}
	link.AddSection("feeds", h.section)
	p.mu.Lock()
	p.cur = h
	p.mu.Unlock()
	return func(ctx context.Context) error {
		port, err := modbus.OpenSerial(p.tty, modbus.Line{Baud: 115200})
		if err != nil {
			return fmt.Errorf("feed: %w", err)
		}
		defer port.Close()
		h.bus = modbus.NewBus(port, modbus.Config{Baud: 115200, CharBits: 10, Timeout: 200 * time.Millisecond, Retries: 2}, log)
		return h.run(ctx)
	}, nil
}

// holder is a deliberately small stand-in for the feed controller of the
// power-feed issue (agent/feeds), which had not landed when the testbench
// was written: it reads the meter and sheds or restores switched circuits
// by priority around a cap, honouring a minimum dwell and never touching a
// protected circuit. It speaks the same commands (throttle.set/clear),
// events (throttle.changed, relay.operated) and telemetry section ("feeds")
// as the contract. Replace it with agent/feeds once that exists.
type holder struct {
	events   report.Events
	log      *slog.Logger
	bus      *modbus.Bus
	circuits []FeedCircuit
	minDwell time.Duration
	hyst     float64 // W
	period   time.Duration

	mu         sync.Mutex
	cap        physic.Power
	powerW     float64
	status     string
	on         map[string]bool
	lastChange map[string]time.Time
	shedLoad   map[string]float64 // W the circuit drew when it was shed
	over       int
}

func (h *holder) throttleSet(_ context.Context, c *command.Command) (any, error) {
	var a struct {
		Feed  string  `json:"feed"`
		CapKW float64 `json:"cap_kw"`
		From  string  `json:"from,omitempty"`
		Until string  `json:"until,omitempty"`
		Ramp  string  `json:"ramp,omitempty"`
	}
	if err := c.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if a.Feed != FeedID {
		return nil, fmt.Errorf("throttle.set: no feed %q (this device has %s)", a.Feed, FeedID)
	}
	if a.CapKW <= 0 || math.IsNaN(a.CapKW) || a.CapKW > 10000 {
		return nil, fmt.Errorf("throttle.set: cap_kw %v out of range", a.CapKW)
	}
	if a.From != "" || a.Until != "" || a.Ramp != "" {
		return nil, fmt.Errorf("throttle.set: schedules: %w", errors.ErrUnsupported)
	}
	h.mu.Lock()
	prev := h.cap
	h.cap = physic.Power(a.CapKW * float64(physic.KiloWatt))
	h.mu.Unlock()
	h.events.Emit(report.ThrottleChanged, report.Notice, report.Fields{"feed": a.Feed, "cap_kw": a.CapKW, "prev_cap_kw": kW(prev)})
	return map[string]any{"feed": a.Feed, "cap_kw": a.CapKW}, nil
}

func (h *holder) throttleClear(_ context.Context, c *command.Command) (any, error) {
	var a struct {
		Feed string `json:"feed"`
	}
	if err := c.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if a.Feed != FeedID {
		return nil, fmt.Errorf("throttle.clear: no feed %q", a.Feed)
	}
	h.mu.Lock()
	prev := h.cap
	h.cap = 0
	h.mu.Unlock()
	h.events.Emit(report.ThrottleChanged, report.Notice, report.Fields{"feed": a.Feed, "cap_kw": nil, "prev_cap_kw": kW(prev)})
	return map[string]any{"feed": a.Feed, "cleared": true}, nil
}

func kW(p physic.Power) float64 { return float64(p) / float64(physic.KiloWatt) }

type circuitView struct {
	ID        string `json:"id"`
	On        bool   `json:"on"`
	Protected bool   `json:"protected,omitempty"`
	Priority  int    `json:"priority,omitempty"`
}

type feedView struct {
	ID       string        `json:"id"`
	PowerW   float64       `json:"power_w"`
	CapW     float64       `json:"cap_w"`
	Status   string        `json:"status"`
	Circuits []circuitView `json:"circuits"`
}

func (h *holder) section() any {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := feedView{ID: FeedID, PowerW: math.Round(h.powerW), CapW: float64(h.cap) / float64(physic.Watt), Status: h.status}
	for _, c := range h.circuits {
		v.Circuits = append(v.Circuits, circuitView{c.ID, h.on[c.ID], c.Protected, c.Priority})
	}
	return map[string]any{"feeds": []feedView{v}}
}

func (h *holder) run(ctx context.Context) error {
	coils := make([]bool, 8)
	if err := h.bus.ReadCoils(ctx, boardSlave, 0, coils); err != nil && ctx.Err() == nil {
		h.log.Warn("relay board unreadable at start", "err", err)
	}
	h.mu.Lock()
	for _, c := range h.circuits {
		h.on[c.ID] = coils[c.Coil]
	}
	h.mu.Unlock()
	t := time.NewTicker(h.period)
	defer t.Stop()
	regs := make([]uint16, 2)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := h.bus.ReadInputRegisters(ctx, meterSlave, regTotalP, regs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			h.mu.Lock()
			h.status = "meter unreadable: holding"
			h.mu.Unlock()
			continue
		}
		p := float64(math.Float32frombits(uint32(regs[0])<<16 | uint32(regs[1])))
		h.step(ctx, p, time.Now())
	}
}

// step makes at most one switching decision per period.
func (h *holder) step(ctx context.Context, powerW float64, now time.Time) {
	h.mu.Lock()
	h.powerW = powerW
	capW := float64(h.cap) / float64(physic.Watt)
	var pick *FeedCircuit
	on := false
	switch {
	case capW > 0 && powerW > capW:
		h.over++
		if h.over < 2 { // confirm over two readings
			break
		}
		for i := range h.circuits { // lowest priority first
			c := &h.circuits[i]
			if c.Protected || !h.on[c.ID] || now.Sub(h.lastChange[c.ID]) < h.minDwell {
				continue
			}
			if pick == nil || c.Priority < pick.Priority {
				pick = c
			}
		}
		h.status = "over cap: shedding"
		if pick == nil {
			h.status = "cap unmet: nothing left to shed"
		}
	default:
		h.over = 0
		h.status = "within cap"
		if capW == 0 {
			h.status = "no cap"
		}
		for i := range h.circuits { // highest priority first
			c := &h.circuits[i]
			if c.Protected || h.on[c.ID] || now.Sub(h.lastChange[c.ID]) < h.minDwell {
				continue
			}
			if capW > 0 && powerW+h.shedLoad[c.ID] > capW-h.hyst {
				continue
			}
			if pick == nil || c.Priority > pick.Priority {
				pick = c
			}
		}
		on = true
	}
	h.mu.Unlock()
	if pick == nil {
		return
	}
	if err := h.bus.WriteSingleCoil(ctx, boardSlave, uint16(pick.Coil), on); err != nil {
		h.log.Warn("relay write failed", "circuit", pick.ID, "err", err)
		return
	}
	h.mu.Lock()
	h.on[pick.ID], h.lastChange[pick.ID], h.over = on, now, 0
	if !on {
		h.shedLoad[pick.ID] = float64(pick.Load) / float64(physic.Watt)
	}
	h.mu.Unlock()
	h.events.Emit(report.RelayOperated, report.Notice, report.Fields{"feed": FeedID, "circuit": pick.ID, "on": on, "power_kw": powerW / 1000, "cap_kw": capW / 1000})
}
