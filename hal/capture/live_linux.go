package capture

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// LiveOptions tunes a live port. The zero value is usable.
type LiveOptions struct {
	// PollInterval bounds how long ReadFrame blocks before ErrTimeout, so
	// readers can notice cancellation. Default 100 ms.
	PollInterval time.Duration
	// RingFrames is the number of frame slots in the receive ring.
	// Default 4096.
	RingFrames int
	// Promiscuous receives frames not addressed to the interface (needed
	// on bridge ports and taps). Default true through OpenLive's callers;
	// set KeepPromiscuousOff to leave it off.
	KeepPromiscuousOff bool
	// KeepOutgoing keeps frames the host sends out of the interface; by
	// default they are dropped in the kernel (a bridge must never re-read
	// what it wrote).
	KeepOutgoing bool
}

// Live is an AF_PACKET socket bound to one interface, with a TPACKET_V2
// receive ring.
type Live struct {
	name    string
	mtu     int
	tp      *afpacket.TPacket
	wfd     int        // send-only AF_PACKET socket, qdisc bypassed
	rmu     sync.Mutex // serialises reads with Close (Close unmaps the ring)
	closing atomic.Bool
	wmu     sync.Mutex
	closed  bool
}

var _ Port = (*Live)(nil)

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

// frameSize returns the ring slot for frames of an MTU: header, link
// header, VLAN tags, rounded to a power of two (TPACKET needs the block,
// a page multiple, to divide evenly).
func frameSize(mtu int) int {
	need := mtu + 14 + 8 + 64 // Ethernet, two tags, tpacket2_hdr + sockaddr_ll
	s := 2048
	for s < need {
		s *= 2
	}
	return s
}

// openWriter opens the socket frames are sent through: bound to the
// interface with protocol 0, so it receives nothing, and with
// PACKET_QDISC_BYPASS, so a forwarded frame goes straight to the driver as
// an IPS's does (the queueing discipline belongs to traffic the host
// originates; a bridge port's egress queue is the peer's problem). The
// bypass is best effort: kernels without it still send through the qdisc.
func openWriter(ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("send socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind send socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	return fd, nil
}

// OpenLive opens iface for reading and writing whole Ethernet frames.
func OpenLive(iface string, o LiveOptions) (*Live, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("capture: %s: %w", iface, err)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.RingFrames <= 0 {
		o.RingFrames = 4096
	}
	fs := frameSize(ifi.MTU)
	block := max(fs, 1<<16)
	perBlock := block / fs
	blocks := max(1, o.RingFrames/perBlock)
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(iface),
		afpacket.TPacketVersion2,
		afpacket.OptFrameSize(fs),
		afpacket.OptBlockSize(block),
		afpacket.OptNumBlocks(blocks),
		afpacket.OptPollTimeout(o.PollInterval),
		afpacket.OptAddVLANHeader(true),
	)
	if err != nil {
		return nil, fmt.Errorf("capture: %s: afpacket: %w", iface, err)
	}
	wfd, err := openWriter(ifi.Index)
	if err != nil {
		tp.Close()
		return nil, fmt.Errorf("capture: %s: %w", iface, err)
	}
	l := &Live{name: iface, mtu: ifi.MTU, tp: tp, wfd: wfd}
	if !o.KeepOutgoing {
		prog, err := ignoreOutgoing()
		if err == nil {
			err = tp.SetBPF(prog)
		}
		if err != nil {
			tp.Close()
			unix.Close(wfd)
			return nil, fmt.Errorf("capture: %s: filter outgoing frames: %w", iface, err)
		}
	}
	if !o.KeepPromiscuousOff {
		if err := tp.SetPromiscuous(true); err != nil {
			tp.Close()
			unix.Close(wfd)
			return nil, fmt.Errorf("capture: %s: promiscuous: %w", iface, err)
		}
	}
	return l, nil
}

// Name is the interface name.
func (l *Live) Name() string { return l.name }

// MTU is the interface MTU when the port was opened.
func (l *Live) MTU() int { return l.mtu }

// ReadFrame copies the next incoming frame into buf.
func (l *Live) ReadFrame(buf []byte) (Info, error) {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.closing.Load() {
		return Info{}, ErrClosed
	}
	data, ci, err := l.tp.ZeroCopyReadPacketData()
	if err != nil {
		if errors.Is(err, afpacket.ErrTimeout) {
			return Info{}, ErrTimeout
		}
		return Info{}, fmt.Errorf("capture: %s: read: %w", l.name, err)
	}
	n := copy(buf, data)
	return Info{Timestamp: ci.Timestamp, CaptureLength: n, Length: max(ci.Length, len(data))}, nil
}

// WriteFrame transmits one frame out of the interface.
func (l *Live) WriteFrame(frame []byte) error {
	if l.closing.Load() {
		return ErrClosed
	}
	if _, err := unix.Write(l.wfd, frame); err != nil {
		return fmt.Errorf("capture: %s: write %d bytes: %w", l.name, len(frame), err)
	}
	return nil
}

// Stats returns the kernel's count of frames received and dropped (ring
// full) since the previous call.
func (l *Live) Stats() (received, dropped uint64, err error) {
	s, _, err := l.tp.SocketStats()
	if err != nil {
		return 0, 0, fmt.Errorf("capture: %s: stats: %w", l.name, err)
	}
	return uint64(s.Packets()), uint64(s.Drops()), nil
}

// Close stops reads (a blocked ReadFrame returns within PollInterval) and
// releases the socket and ring.
func (l *Live) Close() error {
	l.closing.Store(true)
	l.rmu.Lock()
	defer l.rmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if !l.closed {
		l.closed = true
		l.tp.Close()
		unix.Close(l.wfd)
	}
	return nil
}
