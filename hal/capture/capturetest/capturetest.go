// Package capturetest provides an in-memory capture.Port that behaves like a
// bridge port: frames injected "from the wire" are read by the agent, frames
// the agent writes appear on the wire side, in order, with a bounded queue
// that drops (and counts) on overflow as a ring does.
//
// Production code never imports it.
package capturetest

import (
	"sync"
	"time"

	"linkguard.dev/linkguard/hal/capture"
)

// Port is a fake bridge port.
type Port struct {
	poll time.Duration
	in   chan []byte // wire -> agent
	mu   sync.Mutex
	out  [][]byte // agent -> wire
	cond *sync.Cond
	done chan struct{}
	once sync.Once

	Dropped int // frames injected while the receive queue was full
}

var _ capture.Port = (*Port)(nil)

// NewPort returns a port whose receive queue holds depth frames and whose
// reads time out after poll.
func NewPort(depth int, poll time.Duration) *Port {
	p := &Port{poll: poll, in: make(chan []byte, depth), done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// Inject delivers a frame from the wire; it is copied.
func (p *Port) Inject(frame []byte) {
	select {
	case p.in <- append([]byte(nil), frame...):
	default:
		p.mu.Lock()
		p.Dropped++
		p.mu.Unlock()
	}
}

// ReadFrame implements capture.Reader.
func (p *Port) ReadFrame(buf []byte) (capture.Info, error) {
	t := time.NewTimer(p.poll)
	defer t.Stop()
	select {
	case f := <-p.in:
		n := copy(buf, f)
		return capture.Info{Timestamp: time.Now(), CaptureLength: n, Length: len(f)}, nil
	case <-t.C:
		return capture.Info{}, capture.ErrTimeout
	case <-p.done:
		return capture.Info{}, capture.ErrClosed
	}
}

// WriteFrame implements capture.Writer: the frame appears on the wire.
func (p *Port) WriteFrame(frame []byte) error {
	select {
	case <-p.done:
		return capture.ErrClosed
	default:
	}
	p.mu.Lock()
	p.out = append(p.out, append([]byte(nil), frame...))
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// Sent returns and forgets the frames written so far.
func (p *Port) Sent() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.out
	p.out = nil
	return out
}

// WaitSent waits until at least n frames were written (since the last
// Sent) or the timeout passes, and returns them.
func (p *Port) WaitSent(n int, timeout time.Duration) [][]byte {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer stop.Stop()
	p.mu.Lock()
	for len(p.out) < n && time.Now().Before(deadline) {
		p.cond.Wait()
	}
	out := p.out
	p.out = nil
	p.mu.Unlock()
	return out
}

// Close ends reads and writes.
func (p *Port) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

// Ready reports whether a frame is waiting to be read.
func (p *Port) Ready() bool { return len(p.in) > 0 }
