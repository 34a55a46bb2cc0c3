package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/hal/bypass"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/watchdog"
)

// Hardware is everything outside the process that Run drives: the link's
// capture ports, the feeds' buses, meters and relays, the watchdog. It is
// the one seam between the device and its simulation: LiveHardware opens
// the device's interfaces, serial ports and GPIO lines; the testbench runs
// the same Run on in-memory wires and simulated Modbus devices. A nil
// function is hardware the device does not have: a configuration that
// needs it fails to start with errors.ErrUnsupported.
type Hardware struct {
	// OpenPort opens the capture port on the interface name. bridge: an
	// inline port, which forwards what the filter passes; carry: it carries
	// super-frames whole (links.offloads). The opener decides what that
	// takes of the interface (offloads on or off, offload metadata).
	OpenPort func(log *slog.Logger, name string, bridge, carry bool) (capture.Port, error)
	// PrepareInline readies an inline link's two interfaces before their
	// ports open (their MTUs agree; the kernel bridge that carries a
	// fail-open link without the agent is armed, or a stale one released)
	// and returns what undoes it when the agent stops. Nil: there is
	// nothing to prepare (ports with no kernel interface behind them).
	PrepareInline func(log *slog.Logger, l *config.Links) (undo func() error, err error)
	// OpenFeeds opens the buses, meters and relays the configuration's
	// feeds name and returns the controller's specs and what to close when
	// the agent stops.
	OpenFeeds func(cfg *config.Config, log *slog.Logger) ([]feeds.Spec, io.Closer, error)
	// Watchdog returns the loop that feeds the hardware watchdog c names
	// while alive reports progress, and stops feeding when it does not.
	Watchdog func(c *config.Watchdog, alive func(time.Time) bool, log *slog.Logger) func(context.Context) error
	// OpenKernel sets up the kernel fast path of links.enforce: nftables
	// (a kernel bridge between the ports, filtered by nftables). Nil: the
	// device has none.
	OpenKernel func(o linkfilter.KernelOptions) (*linkfilter.Kernel, error)
}

// LiveHardware is the device's own hardware: AF_PACKET ports (with their
// offloads set by openPort), the hal/bypass kernel bridge, serial RS-485
// buses and GPIO lines (openFeeds), /dev/watchdog (hal/watchdog).
func LiveHardware() *Hardware {
	return &Hardware{
		OpenPort: func(log *slog.Logger, name string, bridge, carry bool) (capture.Port, error) {
			p, err := openPort(log, name, bridge, carry)
			if err != nil {
				return nil, err // not a nil *capture.Live in a non-nil Port
			}
			return p, nil
		},
		PrepareInline: prepareInline,
		OpenKernel:    linkfilter.OpenKernel,
		OpenFeeds: func(cfg *config.Config, log *slog.Logger) ([]feeds.Spec, io.Closer, error) {
			specs, hw, err := openFeeds(cfg, log)
			if err != nil {
				return nil, nil, err
			}
			return specs, hw, nil
		},
		Watchdog: func(c *config.Watchdog, alive func(time.Time) bool, log *slog.Logger) func(context.Context) error {
			w := &watchdog.Feeder{Device: c.Device, Every: c.Every, Alive: alive, Logger: log}
			return w.Run
		},
	}
}

// prepareInline checks that the two interfaces can carry each other's
// frames, and sets the kernel bridge for what the link does without the
// agent: cut (fail closed: the interfaces must not be bridged by the
// kernel) or carried unfiltered (fail open: a kernel bridge the agent holds
// shut while it runs).
func prepareInline(log *slog.Logger, l *config.Links) (func() error, error) {
	if _, err := capture.CheckMTU(l.Inside, l.Outside); err != nil {
		return nil, err
	}
	if l.Fail == config.FailOpen {
		h, err := bypass.Arm(l.Inside, l.Outside)
		if err != nil {
			return nil, err
		}
		log.Warn("link fails open: if the agent stops, the kernel bridges it unfiltered", "bridge", bypass.BridgeName)
		return h.Close, nil
	}
	if err := bypass.Release(l.Inside, l.Outside); err != nil {
		return nil, err
	}
	return func() error { return nil }, nil
}

// missing is the error for hardware the configuration needs and the device
// does not have.
func missing(what string) error {
	return fmt.Errorf("agent: this device has no %s: %w", what, errors.ErrUnsupported)
}
