package watchdog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// DefaultEvery is the feeding period when Feeder.Every is not set: well
// under the usual hardware timeouts (15 s or more).
const DefaultEvery = 5 * time.Second

// Feeder writes keepalives to a watchdog device while Alive says the
// guarded parts are alive. If they hang, feeding stops and the hardware
// resets the device.
type Feeder struct {
	Device string        // the watchdog device, /dev/watchdog
	Every  time.Duration // feeding period (well under the hardware timeout); 0: DefaultEvery
	// Alive reports whether the parts the watchdog guards made progress;
	// nil: always.
	Alive  func(now time.Time) bool
	Logger *slog.Logger
}

// Run opens the device and feeds it until ctx ends, then disarms it with
// the magic close ('V'), since a clean stop is not a hang. A write that
// fails ends Run with the error, leaving the watchdog armed.
func (w *Feeder) Run(ctx context.Context) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dev, err := os.OpenFile(w.Device, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	every := w.Every
	if every <= 0 {
		every = DefaultEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	starving := false
	for {
		if w.Alive == nil || w.Alive(time.Now()) {
			if _, err := dev.Write([]byte{0}); err != nil {
				dev.Close()
				return fmt.Errorf("watchdog: %s: %w", w.Device, err)
			}
			starving = false
		} else if !starving {
			starving = true
			log.Error("guarded loop stalled: no longer feeding the watchdog", "device", w.Device)
		}
		select {
		case <-ctx.Done():
			_, _ = dev.Write([]byte{'V'})
			if err := dev.Close(); err != nil {
				return fmt.Errorf("watchdog: %s: %w", w.Device, err)
			}
			return nil
		case <-t.C:
		}
	}
}
