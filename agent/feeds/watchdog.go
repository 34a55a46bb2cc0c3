package feeds

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Watchdog feeds a Linux hardware watchdog (/dev/watchdog) while the
// controller's loops are alive. If they hang, feeding stops and the device
// reboots; the agent then starts in each feed's safe_state.
type Watchdog struct {
	Device string        // /dev/watchdog
	Every  time.Duration // feeding period (well under the hardware timeout)
	// Alive reports whether the parts the watchdog guards made progress.
	Alive  func(now time.Time) bool
	Logger *slog.Logger
}

// Run opens the device and feeds it until ctx ends, then disarms it with
// the magic close ('V'), since a clean stop is not a hang.
func (w *Watchdog) Run(ctx context.Context) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dev, err := os.OpenFile(w.Device, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("feeds: watchdog: %w", err)
	}
	every := w.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	starving := false
	for {
		if w.Alive == nil || w.Alive(time.Now()) {
			if _, err := dev.Write([]byte{0}); err != nil {
				dev.Close()
				return fmt.Errorf("feeds: watchdog: %w", err)
			}
			starving = false
		} else if !starving {
			starving = true
			log.Error("control loop stalled: no longer feeding the watchdog")
		}
		select {
		case <-ctx.Done():
			_, _ = dev.Write([]byte{'V'})
			return dev.Close()
		case <-t.C:
		}
	}
}
