package linkfilter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/capture"
)

// frameBuf is large enough for any frame a port with offloads off delivers
// (and for GRO super-frames, which are then dropped as oversize by the
// writer rather than truncated).
const frameBuf = 65536 + 64

// Bridge is inline mode: it reads frames from each port and writes the
// allowed ones to the other. Denied frames are dropped; frames the filter
// cannot forward whole (truncated captures) are dropped and counted.
// Frames whose checksum the sending peer left to offload hardware leave
// with it filled in (by the outgoing port, or its NIC when it carries
// offloads), so TCP from a veth, virtio or tap peer with its default
// offloads is not lost to a checksum nobody computed.
type Bridge struct {
	f               *Filter
	inside, outside capture.Port
	writeErrs       atomic.Uint64
	badOffload      atomic.Uint64
	csums           atomic.Uint64 // filled in by pump
}

// checksumFiller is a port that fills in the partial checksums of the
// frames it sends and counts them (capture.Live, capturetest.Port).
type checksumFiller interface{ ChecksumsCompleted() uint64 }

var _ checksumFiller = (*capture.Live)(nil)

// txDropper is a port that drops a frame its driver keeps refusing, so the
// frames behind it can leave, and counts them (capture.Live).
type txDropper interface{ TxDropped() uint64 }

var _ txDropper = (*capture.Live)(nil)

// NewBridge bridges inside and outside through f.
func NewBridge(f *Filter, inside, outside capture.Port) *Bridge {
	return &Bridge{f: f, inside: inside, outside: outside}
}

// Run forwards until ctx ends or a port fails. It does not close the ports.
func (b *Bridge) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	ri, ok1 := b.inside.(capture.Ring)
	ro, ok2 := b.outside.(capture.Ring)
	if ok1 && ok2 {
		g.Go(func() error { return b.forward(ctx, ri, ro, SideInside) })
		g.Go(func() error { return b.forward(ctx, ro, ri, SideOutside) })
	} else {
		g.Go(func() error { return b.pump(ctx, b.inside, b.outside, SideInside) })
		g.Go(func() error { return b.pump(ctx, b.outside, b.inside, SideOutside) })
	}
	return g.Wait()
}

// WriteErrors counts frames a port refused to send, or sent and its
// driver then refused for good.
func (b *Bridge) WriteErrors() uint64 {
	n := b.writeErrs.Load()
	for _, p := range []capture.Port{b.inside, b.outside} {
		if d, ok := p.(txDropper); ok {
			n += d.TxDropped()
		}
	}
	return n
}

// ChecksumsCompleted counts the partial checksums filled in on the way out
// (the frames' senders had left them to offload hardware): by the ports,
// and by the bridge for ports that are not rings. Those an outgoing NIC
// fills in (links.offloads) are not counted.
func (b *Bridge) ChecksumsCompleted() uint64 {
	n := b.csums.Load()
	for _, p := range []capture.Port{b.inside, b.outside} {
		if c, ok := p.(checksumFiller); ok {
			n += c.ChecksumsCompleted()
		}
	}
	return n
}

// partial reports whether g is an ordinary frame's partial checksum (a
// super-frame's is filled in when it is segmented).
func partial(g capture.OffloadInfo) bool {
	return g.Flags&capture.GSONeedsCsum != 0 && g.Type&^capture.GSOECN == capture.GSONone
}

// sawPartial logs, once per side and run, that a peer sends partial
// checksums: it explains the work and the counter, and how to spare both.
func (b *Bridge) sawPartial(side Side) {
	b.f.log.Info("bridge: the peer sends partial checksums (transmit checksum offload): they are filled in before forwarding, by the outgoing port (checksums_completed) or, with links.offloads, its NIC; ethtool -K <peer> tx off spares the work",
		"from", side)
}

// OffloadMismatches counts super-frames dropped because their offload
// metadata does not describe the packet the filter decoded (see
// offloadMatches).
func (b *Bridge) OffloadMismatches() uint64 { return b.badOffload.Load() }

// offloadMatches reports whether a super-frame's metadata describes the
// packet decoded from it, so that the kernel, segmenting it on the way
// out, cuts the flow the filter judged. It does not when the NIC merged
// tunnelled segments (GRE GRO reports its inner TCP as plain TCP to a
// packet socket): such a frame cannot be forwarded whole, and is dropped.
func offloadMatches(g capture.OffloadInfo, p *packet.Packet) bool {
	t := g.Type &^ capture.GSOECN
	if t == capture.GSONone {
		return true
	}
	l := p.Outer()
	if p.N != 1 {
		return false // segmenting would cut the outer header, not the flow judged
	}
	switch t {
	case capture.GSOTCPv4:
		return l.Proto == packet.ProtoTCP && !l.IPv6
	case capture.GSOTCPv6:
		return l.Proto == packet.ProtoTCP && l.IPv6
	case capture.GSOUDPL4:
		return l.Proto == packet.ProtoUDP
	}
	return false
}

// drainBatch is how many waiting frames forward judges before it sends
// what it queued: it bounds how long an allowed frame waits for the
// frames that arrived with it.
const drainBatch = 64

// forward moves allowed frames from one ring to the other: each frame is
// decoded and judged where it lies in from's receive ring and copied
// straight into to's transmit ring with its offload metadata; the queue
// goes out with one system call once the frames that were waiting are
// judged (or a port's batch fills), before forward waits again.
func (b *Bridge) forward(ctx context.Context, from, to capture.Ring, side Side) error {
	dec := b.f.NewDecoder(capture.LinkTypeOf(from))
	p := new(packet.Packet)
	queued, seen := false, false
	act := func(frame []byte, info capture.Info) {
		if !seen && partial(info.GSO) {
			seen = true
			b.sawPartial(side)
		}
		dec.Decode(frame, info.Truncated(), p)
		p.Segments = info.GSO.Segments(len(frame))
		if b.f.Judge(p, side, frame, info.Length, info.Timestamp.UnixNano()).Action != Pass {
			return
		}
		if info.Truncated() {
			return // counted by the filter (Snapshot.Truncated)
		}
		if !offloadMatches(info.GSO, p) {
			if c := b.badOffload.Add(1); c == 1 || c%1000 == 0 {
				b.f.log.Warn("bridge: super-frame dropped: its offload metadata does not match its packet (tunnel GRO?); set links.offloads off if this recurs",
					"from", side, "gso_type", info.GSO.Type, "proto", p.Outer().Proto, "layers", p.N, "count", c)
			}
			return
		}
		if err := to.Queue(frame, info.GSO); err != nil {
			b.writeFailed(side, len(frame), err)
			return
		}
		queued = true
	}
	defer func() { _ = to.Flush() }()
	for ctx.Err() == nil {
		if from.Drain(drainBatch, act) > 0 {
			if queued {
				queued = false
				if err := to.Flush(); err != nil {
					b.writeFailed(side, 0, err)
				}
			}
			continue
		}
		switch err := from.Wait(waitBound); {
		case errors.Is(err, capture.ErrClosed):
			return nil
		case err != nil:
			return fmt.Errorf("linkfilter: %s: %w", side, err)
		}
	}
	return nil
}

// waitBound bounds a wait for frames, so forward notices cancellation.
const waitBound = 100 * time.Millisecond

// pump forwards frame by frame, for ports that are not rings (the
// testbench's in-memory wires). WriteFrame takes no offload metadata, so
// a partial checksum is filled in here, in judgeEach's buffer.
func (b *Bridge) pump(ctx context.Context, from, to capture.Port, side Side) error {
	seen := false
	return judgeEach(ctx, b.f, from, side, func(frame []byte, info capture.Info, _ *packet.Packet, r Result) {
		if !seen && partial(info.GSO) {
			seen = true
			b.sawPartial(side)
		}
		if r.Action != Pass {
			return
		}
		if info.Truncated() {
			return // counted by the filter (Snapshot.Truncated)
		}
		if partial(info.GSO) && capture.CompleteChecksum(frame, info.GSO) {
			b.csums.Add(1)
		}
		if err := to.WriteFrame(frame); err != nil {
			b.writeFailed(side, len(frame), err)
		}
	})
}

func (b *Bridge) writeFailed(side Side, n int, err error) {
	if c := b.writeErrs.Add(1); c == 1 || c%1000 == 0 {
		b.f.log.Warn("bridge: write failed", "from", side, "len", n, "count", c, "err", err)
	}
}

// judgeEach reads frames from src, which arrive on side, until ctx ends or
// src is exhausted, decodes and judges each, and hands the verdict to act.
// The frame and packet are reused: act must not keep them.
func judgeEach(ctx context.Context, f *Filter, src capture.Reader, side Side, act func([]byte, capture.Info, *packet.Packet, Result)) error {
	buf := make([]byte, frameBuf)
	dec := f.NewDecoder(capture.LinkTypeOf(src))
	var p packet.Packet
	for ctx.Err() == nil {
		info, err := src.ReadFrame(buf)
		switch {
		case errors.Is(err, capture.ErrTimeout):
			continue
		case errors.Is(err, capture.ErrClosed), errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("linkfilter: %s: %w", side, err)
		}
		frame := buf[:info.CaptureLength]
		dec.Decode(frame, info.Truncated(), &p)
		p.Segments = info.GSO.Segments(len(frame))
		act(frame, info, &p, f.Judge(&p, side, frame, info.Length, info.Timestamp.UnixNano()))
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

// NewMonitor watches ports through f: two ports are the inside and the
// outside taps, in that order, and sources are checked against the side
// they arrive on (Options.Ingress); one port taps both directions and
// sources are not checked.
func NewMonitor(f *Filter, ports ...capture.Port) *Monitor {
	return &Monitor{f: f, ports: ports}
}

// Run reads until ctx ends. It does not close the ports.
func (m *Monitor) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for i, p := range m.ports {
		other := m.ports[(i+1)%len(m.ports)]
		side := SideUnknown
		if len(m.ports) == 2 {
			side = SideInside + Side(i)
		}
		g.Go(func() error { return m.watch(ctx, p, other, side) })
	}
	return g.Wait()
}

func (m *Monitor) watch(ctx context.Context, from, other capture.Port, side Side) error {
	var rst [rstMax]byte
	return judgeEach(ctx, m.f, from, side, func(frame []byte, _ capture.Info, p *packet.Packet, r Result) {
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
