package capture

import (
	"errors"
	"fmt"
	"io"
	"os"

	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

// File reads frames from a pcap or pcapng capture.
type File struct {
	f *os.File
	r *pcapfile.Reader
}

var (
	_ Reader    = (*File)(nil)
	_ LinkTyper = (*File)(nil)
)

// OpenFile opens a pcap or pcapng file (gzip-compressed or not), telling
// them apart by their magic.
func OpenFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	cf, err := NewFileReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture: %s: %w", path, err)
	}
	cf.f = f
	return cf, nil
}

// NewFileReader reads a pcap or pcapng stream.
func NewFileReader(r io.Reader) (*File, error) {
	pr, err := pcapfile.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return &File{r: pr}, nil
}

// LinkType is the link type of the capture (of its first interface, for
// pcapng; frames of interfaces of other link types are skipped).
func (f *File) LinkType() pcapfile.LinkType { return f.r.LinkType() }

// ReadFrame copies the next frame into buf; io.EOF at the end. A damaged
// record ends the file with an error wrapping io.ErrUnexpectedEOF or the
// reader's complaint.
func (f *File) ReadFrame(buf []byte) (Info, error) {
	fr, err := f.r.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Info{}, io.EOF
		}
		return Info{}, fmt.Errorf("capture: %w", err)
	}
	n := copy(buf, fr.Data)
	return Info{Timestamp: fr.Timestamp, CaptureLength: n, Length: fr.Length}, nil
}

// Close closes the underlying file, if OpenFile opened it.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	return f.f.Close()
}
