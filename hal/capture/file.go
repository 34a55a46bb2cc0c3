package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// File reads frames from a pcap or pcapng capture.
type File struct {
	f    *os.File
	src  gopacket.ZeroCopyPacketDataSource
	link layers.LinkType
}

var (
	_ Reader    = (*File)(nil)
	_ LinkTyper = (*File)(nil)
)

// pcapng section header block type; pcap files start with one of the
// classic magics instead.
var ngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}

// OpenFile opens a pcap or pcapng file, telling them apart by their magic.
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
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("capture: reading magic: %w", err)
	}
	if bytes.Equal(magic, ngMagic) {
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{})
		if err != nil {
			return nil, fmt.Errorf("capture: pcapng: %w", err)
		}
		return &File{src: ng, link: ng.LinkType()}, nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("capture: pcap: %w", err)
	}
	return &File{src: pr, link: pr.LinkType()}, nil
}

// LinkType is the link type of the capture (of its first interface, for
// pcapng).
func (f *File) LinkType() layers.LinkType { return f.link }

// ReadFrame copies the next frame into buf; io.EOF at the end. A damaged
// record ends the file with an error wrapping io.ErrUnexpectedEOF or the
// reader's complaint.
func (f *File) ReadFrame(buf []byte) (Info, error) {
	data, ci, err := f.src.ZeroCopyReadPacketData()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Info{}, io.EOF
		}
		return Info{}, fmt.Errorf("capture: %w", err)
	}
	n := copy(buf, data)
	length := ci.Length
	if length < n {
		length = n
	}
	return Info{Timestamp: ci.Timestamp, CaptureLength: n, Length: length}, nil
}

// Close closes the underlying file, if OpenFile opened it.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	return f.f.Close()
}
