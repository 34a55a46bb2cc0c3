package sim

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"periph.io/x/conn/v3/physic"

	"linkguard.dev/linkguard/agent"
	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/hal/modbus/modbussim"
)

// FeedID is the simulated relay controller's one feed.
const FeedID = "feed-1"

// FeedCircuit is one circuit of the simulated feed.
type FeedCircuit struct {
	ID        string
	Coil      int
	Load      physic.Power
	Protected bool
	Priority  int // higher: shed last, restored first
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
)

// Feed is a simulated relay controller: an SDM630-style meter and a coil
// relay board (modbussim) on a pty, and agent.Run with a configuration whose
// bus is that pty — the real feed controller, MQTT link, policy store and
// watcher, and firmware updater.
type Feed struct {
	*Agent
	sim    *modbussim.Sim
	p      *feedPart
	cancel context.CancelFunc
}

type feedPart struct{ tty string }

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
	return &Feed{Agent: a, sim: s, p: p, cancel: cancel}, nil
}

// CloseHardware stops the simulated meter and board.
func (f *Feed) CloseHardware() { f.cancel() }

// Power is the feed's true draw now (the simulator's mean, without noise).
func (f *Feed) Power() physic.Power { return f.sim.Power() }

// Coil is a relay's true state.
func (f *Feed) Coil(i int) bool { return f.sim.Coil(i) }

// CoilOps counts the writes that changed a relay.
func (f *Feed) CoilOps(i int) int { return f.sim.CoilOps(i) }

// SlotRoot is where the device keeps its firmware slots.
func (f *Feed) SlotRoot() string { return filepath.Join(f.opt.Dir, "slots") }

func (p *feedPart) kind() string { return config.KindRelay }

// hardware is the device's own serial ports: the pty is one, with the
// simulated meter and board on its other end.
func (p *feedPart) hardware() *agent.Hardware {
	return &agent.Hardware{OpenFeeds: agent.LiveHardware().OpenFeeds}
}

// config is the relay's buses, feeds and firmware slots, with the pty as
// its RS-485 bus. The dwell times are short so a throttle is watchable in
// the demo and quick in scenarios (a real site keeps minutes).
func (p *feedPart) config(a *Agent) string {
	var c strings.Builder
	for _, ci := range DemoCircuits {
		fmt.Fprintf(&c, "      - {id: %s, relay: {bus: %q, slave: %d, coil: %d}, priority: %d, protected: %v}\n",
			ci.ID, p.tty, boardSlave, ci.Coil, ci.Priority, ci.Protected)
	}
	return fmt.Sprintf(`buses:
  - {port: %q, baud: 115200, timeout: 200ms, retries: 2}
feeds:
  - id: %s
    meter: {bus: %q, model: sdm630, slave: %d}
    min_on: 3s
    min_off: 3s
    max_ops_per_hour: 600
    confirm: 1s
    period: 300ms
    hysteresis: 1kW
    stale_after: 5s
    start_jitter: 1ms
    readback: 5s
    circuits:
%supdate: {root: %q, trust: [%q]}
`, p.tty, FeedID, p.tty, meterSlave, c.String(), filepath.Join(a.opt.Dir, "slots"), a.opt.Keys.ReleasePub)
}
