// Package capturetest provides an in-memory capture.Ring that behaves like a
// bridge port: frames injected "from the wire" are read by the agent, frames
// the agent writes appear on the wire side, in order, with a bounded queue
// that drops (and counts) on overflow as a ring does; queued frames reach
// the wire only at Flush, as from a transmit ring, with the partial
// checksums a Live port fills in filled in.
//
// Production code never imports it.
package capturetest

import (
	"errors"
	"sync"
	"time"

	"linkguard.dev/linkguard/hal/capture"
)

// Port is a fake bridge port.
type Port struct {
	poll time.Duration
	in   chan frame // wire -> agent
	next *frame     // taken from in by Wait, read next (reader only)
	mu   sync.Mutex
	out  [][]byte // agent -> wire
	// queued waits for Flush; flushes counts Flushes that sent something.
	queued  [][]byte
	flushes int
	cond    *sync.Cond
	done    chan struct{}
	once    sync.Once

	Dropped int // frames injected while the receive queue was full
	// Offloads makes the port behave like a Live port opened with
	// capture.LiveOptions.Offloads: Queue passes partial checksums on
	// with the frame instead of filling them in. Set before use.
	Offloads bool
	gsoOut   []capture.OffloadInfo
	csums    uint64
}

type frame struct {
	b   []byte
	gso capture.OffloadInfo
}

var _ capture.Ring = (*Port)(nil)

// NewPort returns a port whose receive queue holds depth frames and whose
// reads time out after poll.
func NewPort(depth int, poll time.Duration) *Port {
	p := &Port{poll: poll, in: make(chan frame, depth), done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// Inject delivers a frame from the wire; it is copied.
func (p *Port) Inject(f []byte) { p.InjectOffload(f, capture.OffloadInfo{}) }

// InjectOffload delivers a super-frame with its offload metadata, as a
// port with offloads hands it over.
func (p *Port) InjectOffload(f []byte, gso capture.OffloadInfo) {
	select {
	case p.in <- frame{append([]byte(nil), f...), gso}:
	default:
		p.mu.Lock()
		p.Dropped++
		p.mu.Unlock()
	}
}

// ReadFrame implements capture.Reader. Reads (ReadFrame, Drain, Wait) are
// for one goroutine, as on a ring.
func (p *Port) ReadFrame(buf []byte) (capture.Info, error) {
	if f := p.next; f != nil {
		p.next = nil
		n := copy(buf, f.b)
		return capture.Info{Timestamp: time.Now(), CaptureLength: n, Length: len(f.b), GSO: f.gso}, nil
	}
	t := time.NewTimer(p.poll)
	defer t.Stop()
	select {
	case f := <-p.in:
		n := copy(buf, f.b)
		return capture.Info{Timestamp: time.Now(), CaptureLength: n, Length: len(f.b), GSO: f.gso}, nil
	case <-t.C:
		return capture.Info{}, capture.ErrTimeout
	case <-p.done:
		return capture.Info{}, capture.ErrClosed
	}
}

// Drain implements capture.Ring.
func (p *Port) Drain(max int, fn func([]byte, capture.Info)) int {
	n := 0
	for n < max {
		var f frame
		if p.next != nil {
			f, p.next = *p.next, nil
		} else {
			select {
			case f = <-p.in:
			default:
				return n
			}
		}
		fn(f.b, capture.Info{Timestamp: time.Now(), CaptureLength: len(f.b), Length: len(f.b), GSO: f.gso})
		n++
	}
	return n
}

// Wait implements capture.Ring.
func (p *Port) Wait(timeout time.Duration) error {
	if p.next != nil {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-p.in:
		p.next = &f
		return nil
	case <-t.C:
		return nil
	case <-p.done:
		return capture.ErrClosed
	}
}

// Queue implements capture.Ring: the frame waits for Flush. Like a Live
// port with offload metadata, it takes a super-frame with its metadata,
// and fills a partial checksum in itself (ChecksumsCompleted) unless it
// has Offloads; what it records (SentOffloads) is what a Live port would
// hand the kernel.
func (p *Port) Queue(frame []byte, gso capture.OffloadInfo) error {
	select {
	case <-p.done:
		return capture.ErrClosed
	default:
	}
	f := append([]byte(nil), frame...)
	filled := false
	switch {
	case gso.Type&^capture.GSOECN != capture.GSONone:
	case gso.Flags&capture.GSONeedsCsum == 0:
		gso = capture.OffloadInfo{}
	case !p.Offloads:
		if !capture.CompleteChecksum(f, gso) {
			return errPartialOutside
		}
		gso, filled = capture.OffloadInfo{}, true
	}
	p.mu.Lock()
	p.queued = append(p.queued, f)
	p.gsoOut = append(p.gsoOut, gso)
	if filled {
		p.csums++
	}
	p.mu.Unlock()
	return nil
}

// errPartialOutside: a partial checksum's metadata points outside the
// frame (a Live port refuses it too).
var errPartialOutside = errors.New("capturetest: partial checksum outside the packet")

// ChecksumsCompleted counts the partial checksums Queue filled in.
func (p *Port) ChecksumsCompleted() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.csums
}

// Flush implements capture.Ring: the queued frames appear on the wire.
func (p *Port) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queued) == 0 {
		return nil
	}
	p.flushes++
	p.out = append(p.out, p.queued...)
	p.queued = nil
	p.cond.Broadcast()
	return nil
}

// SentOffloads returns the offload metadata of every frame queued so far,
// in order.
func (p *Port) SentOffloads() []capture.OffloadInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]capture.OffloadInfo(nil), p.gsoOut...)
}

// Flushes counts the Flushes that sent something.
func (p *Port) Flushes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flushes
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
