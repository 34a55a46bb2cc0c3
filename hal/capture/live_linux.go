package capture

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// LiveOptions tunes a live port. The zero value is usable.
type LiveOptions struct {
	// PollInterval bounds how long ReadFrame blocks before ErrTimeout, so
	// readers can notice cancellation. Default 100 ms.
	PollInterval time.Duration
	// RingFrames is the number of frame slots in the receive ring.
	// Default 1024 (1.7 MB at a 1,500 MTU): 2,048 cost 3.4 MB more RSS
	// over two ports, past a router's 40 MB budget with a 100k-prefix
	// policy, and bought no throughput; it did absorb more of a 64-byte
	// SYN flood (0–0.1% of it overflowed the ring, against 0.1–1.3%;
	// frames lost at the ring are never forwarded). BENCHMARKS.md,
	// 2026-12-04.
	RingFrames int
	// Promiscuous receives frames not addressed to the interface (needed
	// on bridge ports and taps). Default true through OpenLive's callers;
	// set KeepPromiscuousOff to leave it off.
	KeepPromiscuousOff bool
	// KeepOutgoing keeps frames the host sends out of the interface; by
	// default they are dropped in the kernel (a bridge must never re-read
	// what it wrote).
	KeepOutgoing bool
	// TxRingFrames is the number of slots in the transmit ring. Default 256.
	TxRingFrames int
	// TxBatch is how many queued frames Queue lets gather before it sends
	// them itself; Flush sends the rest. Default 32.
	TxBatch int
	// Offloads makes the port one that carries offloads, paired with
	// EnableOffloads: Queue passes a frame's partial checksum on to the
	// kernel or the NIC (NeedsCsum in its virtio_net_hdr) instead of
	// filling it in, and OpenLive fails with ErrUnsupported on a kernel
	// whose receive ring has no virtio_net_hdr (before Linux 5.8) rather
	// than open a port without metadata.
	//
	// Every port takes the metadata where the kernel has it (Metadata):
	// both rings get a virtio_net_hdr per frame (PACKET_VNET_HDR), and
	// Drain and Queue hand it over (Info.GSO), since a peer's offloads
	// reach a port whose own are off: a veth, virtio or tap peer sends
	// TSO super-frames and leaves checksums to the hardware whatever the
	// port's settings. The rings keep their slots; a super-frame too
	// large for one is read whole off the socket queue
	// (PACKET_COPY_THRESH), and every super-frame is sent with a write of
	// its own, through the qdisc layer that segments it where needed.
	Offloads bool
}

// Live is an AF_PACKET socket bound to one interface, with a TPACKET_V2
// receive ring, and a send-only AF_PACKET socket with a TPACKET_V2
// transmit ring.
type Live struct {
	offloads bool
	meta     bool // the receive ring has a virtio_net_hdr per frame
	name     string
	mtu      int
	poll     time.Duration
	rfd      int  // receive socket
	rx       ring // its ring (read under rmu)
	wfd      int  // send-only AF_PACKET socket, qdisc bypassed
	tx       ring // its ring (filled under wmu)
	sfd      int  // offloads: send socket for super-frames (under wmu)
	iov      [2]unix.Iovec
	vhdr     [vnetHdrLen]byte
	queued   int // frames put in tx since the last kick
	batch    int
	rmu      sync.Mutex // serialises reads with Close (Close unmaps the ring)
	closing  atomic.Bool
	wmu      sync.Mutex
	closed   bool
	csums    atomic.Uint64 // partial checksums filled in by put
	// refused is the transmit slot the driver last refused (-1: none)
	// and refusedAt when it first did; see kick.
	refused   int
	refusedAt time.Time
	txDropped atomic.Uint64
}

var _ Ring = (*Live)(nil)

// ignoreOutgoing is a classic BPF program that drops PACKET_OUTGOING frames
// and passes every other frame whole.
func ignoreOutgoing() ([]bpf.RawInstruction, error) {
	return bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 1},
		bpf.RetConstant{Val: 0x40000}, // whole frame (larger than any ring slot)
		bpf.RetConstant{Val: 0},
	})
}

// frameSize returns the ring slot for frames of an MTU: the slot header
// and the headroom before the frame (80 bytes at most), Ethernet, two
// VLAN tags, in TPACKET's 16-byte alignment. (1,616 bytes for a 1,500 MTU,
// 1,632 with the virtio_net_hdr OpenLive adds room for; a power of two
// would waste a fifth of the ring.)
func frameSize(mtu int) int {
	return (mtu + 14 + 8 + 80 + 15) &^ 15
}

// OpenLive opens iface for reading and writing whole Ethernet frames.
func OpenLive(iface string, o LiveOptions) (*Live, error) { return openLive(iface, o, true) }

// openLive is OpenLive; without meta the port is opened as on a kernel
// whose receive ring has no virtio_net_hdr (for tests).
func openLive(iface string, o LiveOptions, meta bool) (*Live, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("capture: %s: %w", iface, err)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	fs := frameSize(ifi.MTU) + 16 // the virtio_net_hdr before each frame
	if o.RingFrames <= 0 {
		o.RingFrames = 1024
	}
	if o.TxRingFrames <= 0 {
		o.TxRingFrames = 256
	}
	if o.TxBatch <= 0 {
		o.TxBatch = 32
	}
	var prog []unix.SockFilter
	if !o.KeepOutgoing {
		ins, err := ignoreOutgoing()
		if err != nil {
			return nil, fmt.Errorf("capture: %s: filter outgoing frames: %w", iface, err)
		}
		prog = make([]unix.SockFilter, len(ins))
		for i, in := range ins {
			prog[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
		}
	}
	rfd, rx, err := openReader(ifi.Index, fs, o.RingFrames, prog, meta)
	if errors.Is(err, ErrUnsupported) && !o.Offloads {
		rfd, rx, err = openReader(ifi.Index, fs, o.RingFrames, prog, false)
	}
	if err == nil && o.Offloads && !rx.vnet {
		rx.unmap()
		unix.Close(rfd)
		err = fmt.Errorf("%w: receive ring without virtio_net_hdr", ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("capture: %s: %w", iface, err)
	}
	wfd, tx, err := openTxRing(ifi.Index, fs, o.TxRingFrames)
	if err == nil && o.Offloads && !tx.vnet {
		tx.unmap()
		unix.Close(wfd)
		err = fmt.Errorf("%w: send ring without virtio_net_hdr", ErrUnsupported)
	}
	sfd := -1
	if err == nil && rx.vnet {
		// Without it a port that takes metadata could not send on the
		// super-frames it reads; only a carrying port insists.
		if sfd, err = openSender(ifi.Index); err != nil && !o.Offloads {
			sfd, err = -1, nil
		} else if err != nil {
			tx.unmap()
			unix.Close(wfd)
		}
	}
	if err != nil {
		rx.unmap()
		unix.Close(rfd)
		return nil, fmt.Errorf("capture: %s: %w", iface, err)
	}
	l := &Live{offloads: o.Offloads, meta: rx.vnet, name: iface, mtu: ifi.MTU, poll: o.PollInterval, rfd: rfd, rx: rx, wfd: wfd, tx: tx, sfd: sfd, batch: min(o.TxBatch, tx.n), refused: -1}
	if !o.KeepPromiscuousOff {
		mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(rfd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			l.Close()
			return nil, fmt.Errorf("capture: %s: promiscuous: %w", iface, err)
		}
	}
	return l, nil
}

// Name is the interface name.
func (l *Live) Name() string { return l.name }

// MTU is the interface MTU when the port was opened.
func (l *Live) MTU() int { return l.mtu }

// Metadata reports whether frames read from the port come with their
// offload metadata (Info.GSO): always with Offloads; without, when the
// kernel has it (Linux 5.8). Without it a super-frame arrives cut to its
// ring slot (Info.Truncated), and a partial checksum is still seen on
// plain IPv4 and IPv6 (the ring's status says so; the headers say where).
func (l *Live) Metadata() bool { return l.meta }

// TxDropped counts frames the driver refused for a whole poll interval,
// dropped so that the frames behind them could leave (see kick).
func (l *Live) TxDropped() uint64 { return l.txDropped.Load() }

// ChecksumsCompleted counts the partial checksums the port filled in
// before sending (see Queue).
func (l *Live) ChecksumsCompleted() uint64 { return l.csums.Load() }

// ReadFrame copies the next incoming frame into buf, waiting up to the poll
// interval for one.
func (l *Live) ReadFrame(buf []byte) (Info, error) {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.closing.Load() {
		return Info{}, ErrClosed
	}
	for {
		if frame, info, ok := l.rx.rxPeek(); ok {
			info.CaptureLength = copy(buf, frame)
			l.rx.rxRelease()
			return info, nil
		}
		got, err := pollFd(l.rfd, unix.POLLIN, l.poll)
		if err != nil {
			return Info{}, fmt.Errorf("capture: %s: read: %w", l.name, err)
		}
		if !got && !l.rx.rxReady() {
			return Info{}, ErrTimeout
		}
	}
}

// Drain hands the frames already waiting in the receive ring, at most max,
// to fn in place, without copying them out: frame is valid only during the
// call (Queue on another port copies it straight into that port's transmit
// ring), and fn may change it there. It returns how many frames were
// handed.
func (l *Live) Drain(max int, fn func(frame []byte, info Info)) int {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.closing.Load() {
		return 0
	}
	n := 0
	for n < max {
		frame, info, ok := l.rx.rxPeek()
		if !ok {
			break
		}
		fn(frame, info)
		l.rx.rxRelease()
		n++
	}
	return n
}

// Wait blocks until a frame is waiting in the receive ring or timeout
// passes.
func (l *Live) Wait(timeout time.Duration) error {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.closing.Load() {
		return ErrClosed
	}
	if l.rx.rxReady() {
		return nil
	}
	if _, err := pollFd(l.rfd, unix.POLLIN, timeout); err != nil {
		return fmt.Errorf("capture: %s: wait: %w", l.name, err)
	}
	return nil
}

// WriteFrame transmits one frame out of the interface.
func (l *Live) WriteFrame(frame []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.put(frame, OffloadInfo{}); err != nil {
		return err
	}
	return l.kick()
}

// Queue copies frame into the transmit ring; it is sent when TxBatch
// frames have gathered or at the next Flush (or WriteFrame), whichever
// comes first. gso is the frame's offload metadata as it was read
// (Info.GSO). Whatever the port, the frame leaves whole and correct: a
// super-frame goes to the kernel with its metadata, to be segmented where
// the port cannot take it whole (in software on a port whose offloads are
// off); a partial checksum is filled in in the slot (CompleteChecksum,
// counted by ChecksumsCompleted), except on a port with Offloads, which
// passes an Internet checksum on for the kernel or NIC to fill in. A port
// without Metadata refuses a super-frame (ErrUnsupported).
func (l *Live) Queue(frame []byte, gso OffloadInfo) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.put(frame, gso); err != nil {
		return err
	}
	if l.queued >= l.batch {
		return l.kick()
	}
	return nil
}

// Flush sends the queued frames.
func (l *Live) Flush() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed || l.queued == 0 {
		return nil
	}
	return l.kick()
}

// put checks frame as the kernel would (so a refused frame is an error
// here, not a silently skipped slot) and fills the next transmit slot,
// sending the queue to make room when the ring is full. Called under wmu.
func (l *Live) put(frame []byte, g OffloadInfo) error {
	if l.closed || l.closing.Load() {
		return ErrClosed
	}
	limit := l.mtu + 14 // the kernel's dev->mtu + hard_header_len
	if len(frame) >= 14 && frame[12] == 0x81 && frame[13] == 0x00 {
		limit += 4 // one 802.1Q tag allowed on top
	}
	super := g.Type&^GSOECN != GSONone
	fill := false
	switch {
	case super:
		if l.sfd < 0 {
			return fmt.Errorf("capture: %s: %w: super-frame on a port without offload metadata", l.name, ErrUnsupported)
		}
		// The kernel segments it again to the MTU where needed.
		limit = len(frame)
	case g.Flags&GSONeedsCsum == 0:
		g = OffloadInfo{} // nothing for the kernel to do
	default:
		fill = !l.offloads || !l.tx.vnet || !inetChecksum(frame, g)
	}
	if len(frame) < 14 || len(frame) > limit || len(frame) > bigFrame-vnetHdrLen {
		return fmt.Errorf("capture: %s: write %d bytes: %w", l.name, len(frame), unix.EMSGSIZE)
	}
	// A super-frame always goes by the ordinary socket, where the kernel
	// segments it for a port that cannot take it whole: the ring bypasses
	// the qdisc layer, and dev_direct_xmit drops a frame it would have to
	// segment, which the ring then retries for ever (see kick).
	if super || len(frame) > l.tx.txRoom() {
		return l.sendWhole(frame, g)
	}
	if !l.tx.txFree() {
		if err := l.waitTx((*ring).txFree); err != nil {
			return err
		}
	}
	if !l.tx.txPut(frame, g, fill) {
		return fmt.Errorf("capture: %s: write %d bytes: partial checksum at %d+%d outside the packet: %w", l.name, len(frame), g.CsumStart, g.CsumOffset, unix.EINVAL)
	}
	if fill {
		l.csums.Add(1)
	}
	l.queued++
	return nil
}

// sendWhole writes a super-frame too large for a transmit slot with its
// own system call, after the frames queued before it. Called under wmu.
func (l *Live) sendWhole(frame []byte, g OffloadInfo) error {
	if l.sfd < 0 {
		return fmt.Errorf("capture: %s: write %d bytes: %w", l.name, len(frame), unix.EMSGSIZE)
	}
	if !l.tx.txSent() {
		if err := l.waitTx((*ring).txSent); err != nil {
			return err
		}
	}
	writeVnet(l.vhdr[:], g, len(frame))
	l.iov[0].Base, l.iov[1].Base = &l.vhdr[0], &frame[0]
	l.iov[0].SetLen(vnetHdrLen)
	l.iov[1].SetLen(len(frame))
	for {
		_, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(l.sfd), uintptr(unsafe.Pointer(&l.iov[0])), uintptr(len(l.iov)))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("capture: %s: write %d bytes: %w", l.name, len(frame), e)
	}
}

// waitTx sends the queue and waits, up to the poll interval, until ready
// reports the ring ready: (*ring).txFree, the slot to fill next is free
// again (the driver held the frame sent from it); (*ring).txSent, the
// kernel has taken every queued slot. A frame the driver refused all that
// time is dropped then (see kick). Called under wmu.
func (l *Live) waitTx(ready func(*ring) bool) error {
	deadline := time.Now().Add(l.poll)
	for {
		if err := l.kick(); err != nil {
			return err
		}
		if ready(&l.tx) {
			return nil
		}
		if time.Now().After(deadline) {
			if l.refused >= 0 && l.refused == l.tx.txOldest() {
				l.dropRefused()
				if err := l.kick(); err != nil {
					return err
				}
				if ready(&l.tx) {
					return nil
				}
			}
			return fmt.Errorf("capture: %s: %w (%s)", l.name, ErrTxBusy, l.tx.txState())
		}
		if _, err := pollFd(l.wfd, unix.POLLOUT, time.Millisecond); err != nil {
			return fmt.Errorf("capture: %s: write: %w", l.name, err)
		}
	}
}

// kick asks the kernel to send every queued slot, without waiting for the
// driver. Called under wmu.
//
// ENOBUFS means the driver refused the frame at the ring's head (a full or
// stopped queue, a peer that will not take it); the kernel leaves it
// there and retries it at the next send, and sends nothing behind it.
// Congestion clears; a frame the port can never send would stop the ring
// for good, so one refused for a whole poll interval is dropped (counted
// in TxDropped) and the rest go on.
func (l *Live) kick() error {
	l.queued = 0
	for {
		err := unix.Sendto(l.wfd, nil, unix.MSG_DONTWAIT, nil)
		switch err {
		case nil, unix.EAGAIN:
			// EAGAIN: the send buffer is full; what is left goes with
			// the next kick.
			l.refused = -1
			return nil
		case unix.ENOBUFS:
			head := l.tx.txOldest()
			now := time.Now()
			if head != l.refused {
				l.refused, l.refusedAt = head, now
				return nil
			}
			if now.Sub(l.refusedAt) < l.poll {
				return nil
			}
			l.dropRefused()
			continue
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("capture: %s: send: %w", l.name, err)
	}
}

// dropRefused drops the frame the driver keeps refusing. Called under wmu.
func (l *Live) dropRefused() {
	if l.tx.txDropOldest() {
		l.txDropped.Add(1)
	}
	l.refused = -1
}

// Stats returns the kernel's count of frames received and dropped (ring
// full) since the previous call.
func (l *Live) Stats() (received, dropped uint64, err error) {
	if l.closing.Load() {
		return 0, 0, ErrClosed
	}
	s, err := unix.GetsockoptTpacketStats(l.rfd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, 0, fmt.Errorf("capture: %s: stats: %w", l.name, err)
	}
	return uint64(s.Packets), uint64(s.Drops), nil
}

// Close stops reads (a blocked ReadFrame returns within PollInterval) and
// releases the sockets and rings. Frames still queued are sent first.
func (l *Live) Close() error {
	l.closing.Store(true)
	l.rmu.Lock()
	defer l.rmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if !l.closed {
		l.closed = true
		if l.queued > 0 {
			_ = l.kick()
		}
		l.rx.unmap()
		unix.Close(l.rfd)
		l.tx.unmap()
		unix.Close(l.wfd)
		if l.sfd >= 0 {
			unix.Close(l.sfd)
		}
	}
	return nil
}
