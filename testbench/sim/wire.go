package sim

import (
	"sync"
	"sync/atomic"
	"time"

	"linkguard.dev/linkguard/hal/capture"
)

// wire is one bridge port on an in-memory segment: the traffic generator
// injects frames "from the cable", the bridge writes what it forwards and
// the wire only counts it (a long-running demo must not keep every frame).
type wire struct {
	in         chan []byte
	done       chan struct{}
	once       sync.Once
	sent, sBy  atomic.Uint64
	overflowed atomic.Uint64
	// rx and drops count frames read and lost since the last stats.
	rx, drops atomic.Uint64
}

var _ capture.Port = (*wire)(nil)

func newWire(depth int) *wire {
	return &wire{in: make(chan []byte, depth), done: make(chan struct{})}
}

// inject hands a frame to the agent; frames are not copied, callers must
// not change them afterwards.
func (w *wire) inject(frame []byte) {
	select {
	case w.in <- frame:
	default:
		w.overflowed.Add(1)
		w.drops.Add(1)
	}
}

// stats are the frames read and the frames lost to a full queue since the
// last call, as a kernel ring's counters are.
func (w *wire) stats() (received, dropped uint64, err error) {
	return w.rx.Swap(0), w.drops.Swap(0), nil
}

func (w *wire) ReadFrame(buf []byte) (capture.Info, error) {
	select {
	case f := <-w.in:
		w.rx.Add(1)
		n := copy(buf, f)
		return capture.Info{Timestamp: time.Now(), CaptureLength: n, Length: len(f)}, nil
	case <-w.done:
		return capture.Info{}, capture.ErrClosed
	default:
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case f := <-w.in:
		w.rx.Add(1)
		n := copy(buf, f)
		return capture.Info{Timestamp: time.Now(), CaptureLength: n, Length: len(f)}, nil
	case <-t.C:
		return capture.Info{}, capture.ErrTimeout
	case <-w.done:
		return capture.Info{}, capture.ErrClosed
	}
}

func (w *wire) WriteFrame(frame []byte) error {
	w.sent.Add(1)
	w.sBy.Add(uint64(len(frame)))
	return nil
}

func (w *wire) Close() error {
	w.once.Do(func() { close(w.done) })
	return nil
}
