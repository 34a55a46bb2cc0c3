package pcapfile

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Writer writes a pcap file with nanosecond timestamps, little-endian, as
// tcpdump --time-stamp-precision=nano does (and byte for byte as pcapgo's
// NewWriterNanos).
type Writer struct {
	w       io.Writer
	snaplen uint32
	hdr     [pcapRecLen]byte
}

// NewWriter writes the file header: frames are of the given link type, and
// kept to snaplen bytes.
func NewWriter(w io.Writer, snaplen uint32, link LinkType) (*Writer, error) {
	var h [pcapHdrLen]byte
	binary.LittleEndian.PutUint32(h[0:], pcapNanos)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], snaplen)
	binary.LittleEndian.PutUint32(h[20:], uint32(link))
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("pcapfile: %w", err)
	}
	return &Writer{w: w, snaplen: snaplen}, nil
}

// WriteFrame appends one frame, cut to the snapshot length; length is its
// length on the wire (at least len(frame) is recorded).
func (w *Writer) WriteFrame(ts time.Time, frame []byte, length int) error {
	length = max(length, len(frame))
	if uint64(len(frame)) > uint64(w.snaplen) {
		frame = frame[:w.snaplen]
	}
	h := w.hdr[:]
	binary.LittleEndian.PutUint32(h[0:], uint32(ts.Unix()))
	binary.LittleEndian.PutUint32(h[4:], uint32(ts.Nanosecond()))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(frame)))
	binary.LittleEndian.PutUint32(h[12:], uint32(length))
	if _, err := w.w.Write(h); err != nil {
		return fmt.Errorf("pcapfile: %w", err)
	}
	if _, err := w.w.Write(frame); err != nil {
		return fmt.Errorf("pcapfile: %w", err)
	}
	return nil
}
