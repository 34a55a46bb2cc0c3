package watchdog_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/watchdog"
)

// TestFeeder: a plain file stands in for the device, recording every byte
// written. The feeder writes while alive, stops while stalled, and ends
// with the magic close.
func TestFeeder(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var alive atomic.Bool
	alive.Store(true)
	w := &watchdog.Feeder{Device: dev, Every: 5 * time.Millisecond, Alive: func(time.Time) bool { return alive.Load() }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	alive.Store(false)
	b, _ := os.ReadFile(dev)
	fed := len(b)
	time.Sleep(50 * time.Millisecond)
	b, _ = os.ReadFile(dev)
	if fed == 0 || len(b) > fed+1 {
		t.Fatalf("fed %d times while alive, then %d more while stalled", fed, len(b)-fed)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(dev)
	if b[len(b)-1] != 'V' {
		t.Fatal("no magic close on a clean stop")
	}
}

func TestFeederMissingDevice(t *testing.T) {
	w := &watchdog.Feeder{Device: filepath.Join(t.TempDir(), "none")}
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("Run on a missing device succeeded")
	}
}
