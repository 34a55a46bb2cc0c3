package capture

import (
	"errors"
	"time"

	"github.com/gopacket/gopacket/layers"
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

// LinkTyper is implemented by sources whose frames are not all Ethernet
// (capture files).
type LinkTyper interface {
	LinkType() layers.LinkType
}

// LinkTypeOf returns r's link type, Ethernet when it does not say.
func LinkTypeOf(r Reader) layers.LinkType {
	if lt, ok := r.(LinkTyper); ok {
		return lt.LinkType()
	}
	return layers.LinkTypeEthernet
}
