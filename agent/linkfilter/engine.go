package linkfilter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/hal/capture"
)

// frameBuf is large enough for any frame a port with offloads off delivers
// (and for GRO super-frames, which are then dropped as oversize by the
// writer rather than truncated).
const frameBuf = 65536 + 64

// Bridge is inline mode: it reads frames from each port and writes the
// allowed ones to the other. Denied frames are dropped; frames the filter
// cannot forward whole (truncated captures) are dropped and counted.
type Bridge struct {
	f                *Filter
	inside, outside  capture.Port
	writeErrs, trunc atomic.Uint64
}

// NewBridge bridges inside and outside through f.
func NewBridge(f *Filter, inside, outside capture.Port) *Bridge {
	return &Bridge{f: f, inside: inside, outside: outside}
}

// Run forwards until ctx ends or a port fails. It does not close the ports.
func (b *Bridge) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.pump(ctx, b.inside, b.outside, "inside") })
	g.Go(func() error { return b.pump(ctx, b.outside, b.inside, "outside") })
	return g.Wait()
}

// WriteErrors counts frames a port refused to send.
func (b *Bridge) WriteErrors() uint64 { return b.writeErrs.Load() }

// batchPort is a port that can gather frames and send them together (a
// transmit ring: one system call for many frames) and can tell whether a
// frame is waiting. capture.Live is one.
type batchPort interface {
	QueueFrame(frame []byte) error
	Flush() error
	Ready() bool
}

func (b *Bridge) pump(ctx context.Context, from, to capture.Port, side string) error {
	bto, okTo := to.(batchPort)
	bfrom, okFrom := from.(batchPort)
	batch := okTo && okFrom
	write := to.WriteFrame
	var idle func()
	if batch {
		pending := false // frames queued since the last Flush
		write = func(frame []byte) error {
			pending = true
			return bto.QueueFrame(frame)
		}
		// Before the read would wait, send what is queued: a frame is
		// held only while frames that were already waiting are judged
		// (at most the port's batch size).
		idle = func() {
			if !pending || bfrom.Ready() {
				return
			}
			pending = false
			if err := bto.Flush(); err != nil {
				b.writeFailed(side, 0, err)
			}
		}
	}
	err := judgeEach(ctx, b.f, from, side, idle, func(frame []byte, info capture.Info, _ *Packet, r Result) {
		if r.Action != Pass {
			return
		}
		if info.Truncated() {
			b.trunc.Add(1)
			return
		}
		if err := write(frame); err != nil {
			b.writeFailed(side, len(frame), err)
		}
	})
	if batch {
		_ = bto.Flush()
	}
	return err
}

func (b *Bridge) writeFailed(side string, n int, err error) {
	if c := b.writeErrs.Add(1); c == 1 || c%1000 == 0 {
		b.f.log.Warn("bridge: write failed", "from", side, "len", n, "count", c, "err", err)
	}
}

// judgeEach reads frames from src until ctx ends or src is exhausted,
// decodes and judges each, and hands the verdict to act. The frame and
// packet are reused: act must not keep them. idle, if not nil, runs before
// every read.
func judgeEach(ctx context.Context, f *Filter, src capture.Reader, what string, idle func(), act func([]byte, capture.Info, *Packet, Result)) error {
	buf := make([]byte, frameBuf)
	dec := NewDecoder(capture.LinkTypeOf(src))
	var p Packet
	for ctx.Err() == nil {
		if idle != nil {
			idle()
		}
		info, err := src.ReadFrame(buf)
		switch {
		case errors.Is(err, capture.ErrTimeout):
			continue
		case errors.Is(err, capture.ErrClosed), errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("linkfilter: %s: %w", what, err)
		}
		frame := buf[:info.CaptureLength]
		dec.Decode(frame, info.Truncated(), &p)
		act(frame, info, &p, f.Judge(&p, frame, info.Length, info.Timestamp.UnixNano()))
	}
	return nil
}

// Monitor is monitor mode: it reads frames from one or more taps, reports
// denied flows and, with Options.Reset, tears denied TCP flows down: an
// RST to the sender goes out of the port the frame came from, an RST to the
// receiver out of the other port (the same one with a single tap), so the
// receiver-bound RST follows the frame's own path on a transparent segment.
type Monitor struct {
	f     *Filter
	ports []capture.Port
}

// NewMonitor watches ports through f (one or two).
func NewMonitor(f *Filter, ports ...capture.Port) *Monitor {
	return &Monitor{f: f, ports: ports}
}

// Run reads until ctx ends. It does not close the ports.
func (m *Monitor) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for i, p := range m.ports {
		other := m.ports[(i+1)%len(m.ports)]
		g.Go(func() error { return m.watch(ctx, p, other) })
	}
	return g.Wait()
}

func (m *Monitor) watch(ctx context.Context, from, other capture.Port) error {
	var rst [rstMax]byte
	return judgeEach(ctx, m.f, from, "monitor", nil, func(frame []byte, _ capture.Info, p *Packet, r Result) {
		if r.Action != Reset {
			return
		}
		if n := BuildRST(rst[:], frame, p, true); n > 0 {
			if err := from.WriteFrame(rst[:n]); err != nil {
				m.f.log.Warn("monitor: reset to sender failed", "err", err)
			}
		}
		if n := BuildRST(rst[:], frame, p, false); n > 0 {
			if err := other.WriteFrame(rst[:n]); err != nil {
				m.f.log.Warn("monitor: reset to receiver failed", "err", err)
			}
		}
	})
}
