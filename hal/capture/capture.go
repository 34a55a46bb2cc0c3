package capture

import (
	"errors"
	"time"

	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

// Sentinel errors callers act on.
var (
	// ErrTimeout: no frame arrived within the poll interval; read again
	// (after checking for cancellation).
	ErrTimeout = errors.New("capture: timeout")
	// ErrClosed: the port was closed.
	ErrClosed = errors.New("capture: closed")
	// ErrUnsupported: the operation is not available on this source.
	ErrUnsupported = errors.New("capture: unsupported")
)

// Info describes one frame read.
type Info struct {
	Timestamp     time.Time
	CaptureLength int // bytes placed in the caller's buffer
	Length        int // bytes of the frame on the wire (> CaptureLength when truncated)
	// GSO is the frame's offload metadata, from a port that has it
	// (Live.Metadata): set on a super-frame, several segments of one flow
	// handed over as one frame, and on a frame whose checksum the sender
	// left to offload hardware (GSONeedsCsum). Zero for an ordinary frame
	// with its checksums complete.
	GSO OffloadInfo
}

// OffloadInfo is the offload metadata the kernel keeps with a frame (its
// struct virtio_net_hdr). A super-frame was merged on receive (GRO), or not
// yet segmented by the sender (TSO/GSO), and is segmented again only where
// it must be, on the way out of a port that cannot take it whole. A frame
// whose checksum the sender left to the hardware (NeedsCsum), super-frame
// or not, carries only the pseudo-header sum in its checksum field until
// then (CompleteChecksum fills it in).
type OffloadInfo struct {
	Flags      uint8  // GSONeedsCsum, GSODataValid
	Type       uint8  // GSOTCPv4, GSOTCPv6 or GSOUDPL4, with GSOECN; GSONone
	HdrLen     uint16 // bytes of headers
	Size       uint16 // payload bytes per segment
	CsumStart  uint16 // where the checksum starts, from the frame's first byte
	CsumOffset uint16 // where the checksum is stored, from CsumStart
}

// GSO flags and types, as in <linux/virtio_net.h>.
const (
	GSONeedsCsum = 1 // the checksum from CsumStart is still to be computed
	GSODataValid = 2 // the checksum was verified on receive

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3 // UFO; not produced by current kernels
	GSOTCPv6 = 4
	GSOUDPL4 = 5
	GSOECN   = 0x80
)

// Segments is how many frames a super-frame of n bytes stands for on the
// wire (1 for an ordinary frame).
func (g OffloadInfo) Segments(n int) int {
	if g.Type&^GSOECN == GSONone || g.Size == 0 || int(g.HdrLen) >= n {
		return 1
	}
	return (n - int(g.HdrLen) + int(g.Size) - 1) / int(g.Size)
}

// Truncated reports whether part of the frame was not captured.
func (i Info) Truncated() bool { return i.CaptureLength < i.Length }

// Reader reads frames into a buffer the caller owns.
type Reader interface {
	// ReadFrame copies the next frame into buf. It returns ErrTimeout when
	// nothing arrived within the source's poll interval, io.EOF at the end
	// of a file and ErrClosed after Close.
	ReadFrame(buf []byte) (Info, error)
}

// Writer transmits frames.
type Writer interface {
	WriteFrame(frame []byte) error
}

// Port is one side of an inline bridge: frames can be read from and written
// to it.
type Port interface {
	Reader
	Writer
	Close() error
}

// Ring is a Port that a forwarder can drive without copying frames out: it
// hands received frames over in place, queues frames to send (with their
// offload metadata) and sends the queue with one call. A bridge judges each
// frame where it lies and copies it straight into the other port's
// transmit queue. Live is one; capturetest.Port is another.
type Ring interface {
	Port
	// Drain hands the frames already waiting, at most max, to fn in
	// place; frame is valid only during the call, and fn may change it.
	// It returns how many.
	Drain(max int, fn func(frame []byte, info Info)) int
	// Wait blocks until a frame is waiting or timeout passes (nil either
	// way); ErrClosed after Close.
	Wait(timeout time.Duration) error
	// Queue copies frame into the transmit queue; it is sent by Flush, or
	// earlier once the port's batch is full. gso is the frame's offload
	// metadata as read (Info.GSO); the port sends the frame as a wire
	// carries it: a super-frame segmented by the kernel or NIC where it
	// must be, a partial checksum filled in by the port itself unless it
	// hands the frame to hardware that will.
	Queue(frame []byte, gso OffloadInfo) error
	// Flush sends the queued frames.
	Flush() error
}

// LinkTyper is implemented by sources whose frames are not all Ethernet
// (capture files).
type LinkTyper interface {
	LinkType() pcapfile.LinkType
}

// LinkTypeOf returns r's link type, Ethernet when it does not say.
func LinkTypeOf(r Reader) pcapfile.LinkType {
	if lt, ok := r.(LinkTyper); ok {
		return lt.LinkType()
	}
	return pcapfile.LinkTypeEthernet
}
