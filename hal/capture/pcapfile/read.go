package pcapfile

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"time"
)

// MaxFrame is the most of a frame a record keeps: 256 KiB, tcpdump's
// largest snapshot length (a 64 KB super-frame and its headers fit). A
// record that captured more reads as that much of a truncated frame.
const MaxFrame = 262144

// maxMeta bounds the pcapng blocks read whole (section headers, interface
// descriptions): their options are a few names and numbers.
const maxMeta = 1 << 20

// Frame is one record of a capture.
type Frame struct {
	Data      []byte // the bytes captured (at most MaxFrame); valid until the next Next
	Length    int    // the frame's length on the wire, at least len(Data)
	Timestamp time.Time
}

// Truncated reports whether part of the frame was not captured.
func (f Frame) Truncated() bool { return len(f.Data) < f.Length }

// Reader reads the frames of a pcap or pcapng stream, gzip-compressed or
// not. A pcapng file's link type is that of its first interface; frames of
// interfaces of another link type are skipped (Skipped counts them), as
// libpcap does.
type Reader struct {
	r    *bufio.Reader
	link LinkType
	ng   bool
	buf  []byte // the frame handed out, grown to the largest kept
	hdr  [24]byte
	// Skipped counts the frames passed over for their interface's link
	// type (pcapng only).
	Skipped uint64

	// pcap
	order binary.ByteOrder
	nanos bool
	// pcapng: the current section's byte order and interfaces
	ifaces []iface
	err    error // the error that ended the stream, returned again
}

type iface struct {
	link    LinkType
	snaplen uint32
	units   uint64 // timestamp units per second
	offset  int64  // seconds added to every timestamp
}

// Magic numbers of the two formats.
const (
	pcapMicros   = 0xa1b2c3d4
	pcapNanos    = 0xa1b23c4d
	ngSection    = 0x0a0d0d0a
	ngByteOrder  = 0x1a2b3c4d
	gzipMagic    = 0x1f8b
	pcapHdrLen   = 24
	pcapRecLen   = 16
	ngMinBlock   = 12 // type, length, trailing length
	ngIDB        = 1
	ngPB         = 2 // obsolete packet block
	ngSPB        = 3
	ngEPB        = 6
	optEnd       = 0
	optTSResol   = 9
	optTSOffset  = 14
	defaultUnits = 1_000_000
)

// NewReader reads the file header of a pcap or pcapng stream (and, for
// pcapng, the blocks up to its first interface description).
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if m, err := br.Peek(2); err == nil && binary.BigEndian.Uint16(m) == gzipMagic {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcapfile: gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("pcapfile: reading the magic number: %w", unexpected(err))
	}
	rd := &Reader{r: br}
	if binary.BigEndian.Uint32(magic) == ngSection {
		rd.ng = true
		if err := rd.ngOpen(); err != nil {
			return nil, err
		}
		return rd, nil
	}
	if err := rd.pcapOpen(); err != nil {
		return nil, err
	}
	return rd, nil
}

// LinkType is the link type of the capture's frames.
func (r *Reader) LinkType() LinkType { return r.link }

// Next reads the next frame: io.EOF at the end of the stream, an error
// wrapping io.ErrUnexpectedEOF when it ends inside a record, another error
// for a record that makes no sense. After an error Next returns it again.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	var f Frame
	var err error
	if r.ng {
		f, err = r.ngNext()
	} else {
		f, err = r.pcapNext()
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			err = fmt.Errorf("pcapfile: %w", err)
		}
		r.err = err
	}
	return f, err
}

// unexpected turns an end of stream inside a structure into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *Reader) pcapOpen() error {
	h := r.hdr[:pcapHdrLen]
	if _, err := io.ReadFull(r.r, h[:4]); err != nil {
		return fmt.Errorf("pcapfile: pcap header: %w", unexpected(err))
	}
	switch m := binary.LittleEndian.Uint32(h); m {
	case pcapMicros, pcapNanos:
		r.order, r.nanos = binary.LittleEndian, m == pcapNanos
	default:
		switch m = binary.BigEndian.Uint32(h); m {
		case pcapMicros, pcapNanos:
			r.order, r.nanos = binary.BigEndian, m == pcapNanos
		default:
			return fmt.Errorf("pcapfile: not a pcap or pcapng file (magic %08x)", binary.BigEndian.Uint32(h))
		}
	}
	if _, err := io.ReadFull(r.r, h[4:]); err != nil {
		return fmt.Errorf("pcapfile: pcap header: %w", unexpected(err))
	}
	if major, minor := r.order.Uint16(h[4:]), r.order.Uint16(h[6:]); major != 2 || minor != 4 {
		return fmt.Errorf("pcapfile: pcap version %d.%d, not 2.4", major, minor)
	}
	// The upper bits of the link type field are FCS flags, not the type.
	r.link = LinkType(r.order.Uint32(h[20:]))
	return nil
}

func (r *Reader) pcapNext() (Frame, error) {
	h := r.hdr[:pcapRecLen]
	if _, err := io.ReadFull(r.r, h); err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		return Frame{}, fmt.Errorf("record header: %w", unexpected(err))
	}
	sec, frac := r.order.Uint32(h), r.order.Uint32(h[4:])
	captured, wire := r.order.Uint32(h[8:]), r.order.Uint32(h[12:])
	ns := int64(frac)
	if !r.nanos {
		ns *= 1000
	}
	data, err := r.frame(uint64(captured), 0)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Data: data, Length: wireLength(uint64(wire), uint64(captured)), Timestamp: time.Unix(int64(sec), ns).UTC()}, nil
}

// frame reads a record's captured bytes, keeping at most MaxFrame of them,
// then skips pad more.
func (r *Reader) frame(captured, pad uint64) ([]byte, error) {
	keep := min(captured, MaxFrame)
	if uint64(cap(r.buf)) < keep {
		r.buf = make([]byte, keep)
	}
	data := r.buf[:keep]
	if _, err := io.ReadFull(r.r, data); err != nil {
		return nil, fmt.Errorf("frame: %w", unexpected(err))
	}
	if err := r.skip(captured - keep + pad); err != nil {
		return nil, fmt.Errorf("frame: %w", err)
	}
	return data, nil
}

// wireLength is a frame's length on the wire, at least what was captured,
// as an int, which is 32 bits on the devices (where 2^31-1 is the most).
func wireLength(wire, captured uint64) int {
	return int(min(max(wire, captured), math.MaxInt))
}

func (r *Reader) skip(n uint64) error {
	for n > 0 {
		step := int(min(n, 1<<30))
		d, err := r.r.Discard(step)
		n -= uint64(d)
		if err != nil {
			return unexpected(err)
		}
	}
	return nil
}

// ngOpen reads the section header and the blocks up to the first interface
// description, whose link type is the file's.
func (r *Reader) ngOpen() error {
	for len(r.ifaces) == 0 {
		typ, body, err := r.ngBlock()
		if errors.Is(err, io.EOF) {
			return errors.New("pcapfile: pcapng: no interface description")
		}
		if err != nil {
			return fmt.Errorf("pcapfile: pcapng: %w", err)
		}
		switch typ {
		case ngSection, ngIDB:
			if err := r.ngMeta(typ, body); err != nil {
				return fmt.Errorf("pcapfile: pcapng: %w", err)
			}
		case ngEPB, ngSPB, ngPB:
			return errors.New("pcapfile: pcapng: a packet before any interface description")
		default:
			if err := r.skipBlock(typ, body); err != nil {
				return fmt.Errorf("pcapfile: pcapng: %w", err)
			}
		}
	}
	r.link = r.ifaces[0].link
	return nil
}

func (r *Reader) ngNext() (Frame, error) {
	for {
		typ, body, err := r.ngBlock()
		if err != nil {
			return Frame{}, err
		}
		switch typ {
		case ngSection, ngIDB:
			if err := r.ngMeta(typ, body); err != nil {
				return Frame{}, err
			}
			continue
		case ngEPB, ngSPB, ngPB:
		default:
			if err := r.skipBlock(typ, body); err != nil {
				return Frame{}, err
			}
			continue
		}
		f, ok, err := r.ngPacket(typ, body)
		if err != nil || ok {
			return f, err
		}
	}
}

// ngBlock reads a block's type and length, and for a section header its
// byte-order magic, which says how to read the rest of the section. body
// is what follows up to the block's end, its trailing length included.
func (r *Reader) ngBlock() (typ uint32, body uint32, err error) {
	h := r.hdr[:8]
	if _, err := io.ReadFull(r.r, h); err != nil {
		if err == io.EOF {
			return 0, 0, io.EOF
		}
		return 0, 0, fmt.Errorf("block header: %w", unexpected(err))
	}
	// A section header reads the same in either byte order.
	if binary.BigEndian.Uint32(h) == ngSection {
		bo := r.hdr[8:12]
		if _, err := io.ReadFull(r.r, bo); err != nil {
			return 0, 0, fmt.Errorf("section header: %w", unexpected(err))
		}
		switch {
		case binary.LittleEndian.Uint32(bo) == ngByteOrder:
			r.order = binary.LittleEndian
		case binary.BigEndian.Uint32(bo) == ngByteOrder:
			r.order = binary.BigEndian
		default:
			return 0, 0, fmt.Errorf("section header: byte-order magic %x", bo)
		}
		n := r.order.Uint32(h[4:])
		if n < 28 || n%4 != 0 {
			return 0, 0, fmt.Errorf("section header of %d bytes", n)
		}
		return ngSection, n - 12, nil
	}
	if r.order == nil {
		return 0, 0, errors.New("no section header")
	}
	typ, n := r.order.Uint32(h), r.order.Uint32(h[4:])
	if n < ngMinBlock || n%4 != 0 {
		return 0, 0, fmt.Errorf("block %#x of %d bytes", typ, n)
	}
	return typ, n - 8, nil
}

// skipBlock passes over a block this reader has no use for (statistics,
// name resolution, secrets, custom blocks), checking only its end.
func (r *Reader) skipBlock(typ, body uint32) error {
	if err := r.skip(uint64(body - 4)); err != nil {
		return fmt.Errorf("block %#x: %w", typ, err)
	}
	return r.trailer(body + 8)
}

// ngMeta reads a section header or an interface description whole: body
// bytes, the trailing length included.
func (r *Reader) ngMeta(typ, body uint32) error {
	if body > maxMeta {
		return fmt.Errorf("block %#x of %d bytes: more than %d", typ, body, maxMeta)
	}
	b := make([]byte, body)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return fmt.Errorf("block %#x: %w", typ, unexpected(err))
	}
	total := body + 8
	if typ == ngSection {
		total += 4 // the byte-order magic
	}
	if got := r.order.Uint32(b[len(b)-4:]); got != total {
		return fmt.Errorf("block of %d bytes ends with a length of %d", total, got)
	}
	b = b[:len(b)-4]
	if typ == ngSection {
		// version, section length, options: a new section, new interfaces.
		if len(b) < 12 {
			return errors.New("section header too short")
		}
		if major := r.order.Uint16(b); major != 1 {
			return fmt.Errorf("pcapng version %d.%d, not 1.x", major, r.order.Uint16(b[2:]))
		}
		r.ifaces = r.ifaces[:0]
		return nil
	}
	if len(b) < 8 {
		return errors.New("interface description too short")
	}
	if len(r.ifaces) >= 1<<16 {
		return errors.New("more than 65536 interfaces in a section")
	}
	in := iface{link: LinkType(r.order.Uint16(b)), snaplen: r.order.Uint32(b[4:]), units: defaultUnits}
	for o := b[8:]; len(o) >= 4; {
		code, n := r.order.Uint16(o), int(r.order.Uint16(o[2:]))
		if code == optEnd {
			break
		}
		if 4+n > len(o) {
			return fmt.Errorf("interface option %d of %d bytes overruns its block", code, n)
		}
		v := o[4 : 4+n]
		switch {
		case code == optTSResol && n >= 1:
			units, ok := resolution(v[0])
			if !ok {
				return fmt.Errorf("timestamp resolution %#x: finer than the nanosecond's 1e-19 or 2^-63", v[0])
			}
			in.units = units
		case code == optTSOffset && n >= 8:
			in.offset = int64(r.order.Uint64(v))
		}
		o = o[min(len(o), 4+(n+3)&^3):]
	}
	r.ifaces = append(r.ifaces, in)
	return nil
}

// resolution is the units per second an if_tsresol value gives: 10^n, or
// 2^n with the high bit set.
func resolution(v byte) (uint64, bool) {
	if v&0x80 != 0 {
		e := v & 0x7f
		return 1 << e, e <= 63
	}
	if v > 19 {
		return 0, false
	}
	u := uint64(1)
	for range v {
		u *= 10
	}
	return u, true
}

// ngPacket reads an enhanced, simple or obsolete packet block; ok is false
// for a frame skipped for its interface's link type.
func (r *Reader) ngPacket(typ, body uint32) (f Frame, ok bool, err error) {
	fixed := uint32(20)
	if typ == ngSPB {
		fixed = 4
	}
	if body < fixed+4 {
		return Frame{}, false, fmt.Errorf("packet block %#x of %d bytes", typ, body+8)
	}
	h := r.hdr[:fixed]
	if _, err := io.ReadFull(r.r, h); err != nil {
		return Frame{}, false, fmt.Errorf("packet block: %w", unexpected(err))
	}
	room := uint64(body - fixed - 4) // for the frame, its padding and options
	var id int
	var captured, wire uint64
	var ts uint64
	switch typ {
	case ngEPB:
		id = int(r.order.Uint32(h))
		ts = uint64(r.order.Uint32(h[4:]))<<32 | uint64(r.order.Uint32(h[8:]))
		captured, wire = uint64(r.order.Uint32(h[12:])), uint64(r.order.Uint32(h[16:]))
	case ngPB:
		id = int(r.order.Uint16(h))
		ts = uint64(r.order.Uint32(h[4:]))<<32 | uint64(r.order.Uint32(h[8:]))
		captured, wire = uint64(r.order.Uint32(h[12:])), uint64(r.order.Uint32(h[16:]))
	case ngSPB:
		// No captured length: the frame's, cut to the interface's
		// snapshot length. No timestamp either.
		wire = uint64(r.order.Uint32(h))
		captured = wire
		if len(r.ifaces) > 0 && r.ifaces[0].snaplen != 0 {
			captured = min(captured, uint64(r.ifaces[0].snaplen))
		}
	}
	if id >= len(r.ifaces) {
		return Frame{}, false, fmt.Errorf("packet of interface %d; the section describes %d", id, len(r.ifaces))
	}
	if captured > room {
		return Frame{}, false, fmt.Errorf("packet of %d bytes in a block with room for %d", captured, room)
	}
	in := r.ifaces[id]
	if in.link != r.link {
		r.Skipped++
		if err := r.skip(room); err != nil {
			return Frame{}, false, fmt.Errorf("packet block: %w", err)
		}
		return Frame{}, false, r.trailer(body + 8)
	}
	data, err := r.frame(captured, room-captured)
	if err != nil {
		return Frame{}, false, err
	}
	if err := r.trailer(body + 8); err != nil {
		return Frame{}, false, err
	}
	f = Frame{Data: data, Length: wireLength(wire, captured)}
	if typ != ngSPB {
		f.Timestamp = in.time(ts)
	}
	return f, true, nil
}

// trailer checks a block's trailing copy of its length.
func (r *Reader) trailer(n uint32) error {
	t := r.hdr[:4]
	if _, err := io.ReadFull(r.r, t); err != nil {
		return fmt.Errorf("block end: %w", unexpected(err))
	}
	if got := r.order.Uint32(t); got != n {
		return fmt.Errorf("block of %d bytes ends with a length of %d", n, got)
	}
	return nil
}

func (in iface) time(ts uint64) time.Time {
	sec, rem := ts/in.units, ts%in.units
	hi, lo := bits.Mul64(rem, 1e9)
	ns, _ := bits.Div64(hi, lo, in.units) // rem < units, so no overflow
	return time.Unix(int64(sec)+in.offset, int64(ns)).UTC()
}
