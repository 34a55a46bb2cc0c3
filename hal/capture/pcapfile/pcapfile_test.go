package pcapfile_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

var (
	epoch  = time.Unix(1700000000, 123456789).UTC()
	frames = [][]byte{
		bytes.Repeat([]byte{0xaa}, 60),
		bytes.Repeat([]byte{0xbb}, 1514),
		{},
		bytes.Repeat([]byte{0xcc}, 65535+14),
	}
)

// record is what both readers agree a frame is.
type record struct {
	data   []byte
	length int
	ts     time.Time
}

// readAll reads every frame with this package's reader.
func readAll(t *testing.T, b []byte) (pcapfile.LinkType, []record) {
	t.Helper()
	r, err := pcapfile.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.LinkType(), out
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, record{bytes.Clone(f.Data), f.Length, f.Timestamp})
	}
}

// pcapgoAll reads every frame with pcapgo.
func pcapgoAll(t *testing.T, b []byte) (layers.LinkType, []record) {
	t.Helper()
	var src interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var link layers.LinkType
	if bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.NgReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		src, link = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		src, link = r, r.LinkType()
	}
	var out []record
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return link, out
		}
		if err != nil {
			t.Fatalf("pcapgo frame %d: %v", len(out), err)
		}
		out = append(out, record{data, ci.Length, ci.Timestamp.UTC()})
	}
}

func same(t *testing.T, name string, got, want []record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", name, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].data, want[i].data) || got[i].length != want[i].length || !got[i].ts.Equal(want[i].ts) {
			t.Errorf("%s frame %d: %d bytes of %d at %v, want %d of %d at %v", name, i,
				len(got[i].data), got[i].length, got[i].ts, len(want[i].data), want[i].length, want[i].ts)
		}
	}
}

// pcapgoFiles writes the same frames as pcapgo does, in each of its forms.
func pcapgoFiles(t testing.TB) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, nanos := range []bool{false, true} {
		var b bytes.Buffer
		w := pcapgo.NewWriter(&b)
		name := "pcap-micro"
		if nanos {
			w, name = pcapgo.NewWriterNanos(&b), "pcap-nano"
		}
		if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		for i, f := range frames {
			ci := gopacket.CaptureInfo{Timestamp: epoch.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: len(f) + i}
			if err := w.WritePacket(ci, f); err != nil {
				t.Fatal(err)
			}
		}
		files[name] = b.Bytes()
	}
	// pcapng: one Ethernet interface, then a raw IP one whose frames a
	// single-link-type reader skips.
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 262144},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Comment: "linkguard test"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := w.AddInterface(pcapgo.NgInterface{Name: "tun0", LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: epoch.Add(time.Duration(i) * time.Second), CaptureLength: len(f), Length: len(f) + 2*i}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
		ci.InterfaceIndex, ci.CaptureLength, ci.Length = raw, 4, 4
		if err := w.WritePacket(ci, []byte{0x45, 0, 0, 20}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	files["pcapng"] = b.Bytes()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(files["pcap-nano"])
	zw.Close()
	files["pcap.gz"] = z.Bytes()
	return files
}

// TestReadsWhatPcapgoReads: on captures pcapgo writes, this reader and
// pcapgo's see the same link type, frames, lengths and timestamps.
func TestReadsWhatPcapgoReads(t *testing.T) {
	for name, b := range pcapgoFiles(t) {
		link, got := readAll(t, b)
		wantLink, want := pcapgoAll(t, b)
		if uint16(link) != uint16(wantLink) || link != pcapfile.LinkTypeEthernet {
			t.Errorf("%s: link type %v, pcapgo %v", name, link, wantLink)
		}
		same(t, name, got, want)
		if len(got) != len(frames) {
			t.Errorf("%s: %d frames", name, len(got))
		}
	}
}

// TestWriterIsPcapgos: the writer's files are pcapgo's NewWriterNanos
// files byte for byte, and read back.
func TestWriterIsPcapgos(t *testing.T) {
	var mine, theirs bytes.Buffer
	w, err := pcapfile.NewWriter(&mine, 262144, pcapfile.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	pw := pcapgo.NewWriterNanos(&theirs)
	if err := pw.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ts := epoch.Add(time.Duration(i) * 1001 * time.Nanosecond)
		if err := w.WriteFrame(ts, f, len(f)+i); err != nil {
			t.Fatal(err)
		}
		if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f) + i}, f); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(mine.Bytes(), theirs.Bytes()) {
		t.Fatal("the writer's file differs from pcapgo's")
	}
	_, got := readAll(t, mine.Bytes())
	_, want := pcapgoAll(t, mine.Bytes())
	same(t, "written", got, want)

	// A frame longer than the snapshot length is cut to it.
	var small bytes.Buffer
	w, _ = pcapfile.NewWriter(&small, 100, pcapfile.LinkTypeRaw)
	if err := w.WriteFrame(epoch, frames[1], 0); err != nil {
		t.Fatal(err)
	}
	link, got := readAll(t, small.Bytes())
	if link != pcapfile.LinkTypeRaw || len(got) != 1 || len(got[0].data) != 100 || got[0].length != 1514 {
		t.Fatalf("%v %+v", link, got)
	}
}

// order is a byte order that appends.
type order interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// ng builds pcapng files by hand, in either byte order, for what pcapgo
// does not write.
type ng struct {
	o order
	b bytes.Buffer
}

func (n *ng) block(typ uint32, body []byte) *ng {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	l := uint32(12 + len(body))
	n.b.Write(n.o.AppendUint32(n.o.AppendUint32(nil, typ), l))
	n.b.Write(body)
	n.b.Write(n.o.AppendUint32(nil, l))
	return n
}

func (n *ng) section() *ng {
	b := n.o.AppendUint32(nil, 0x1a2b3c4d)
	b = n.o.AppendUint16(n.o.AppendUint16(b, 1), 0)
	b = n.o.AppendUint64(b, ^uint64(0))
	return n.block(0x0a0d0d0a, b)
}

// iface adds an interface description with options (code, value pairs).
func (n *ng) iface(link uint16, snap uint32, opts ...[]byte) *ng {
	b := n.o.AppendUint32(n.o.AppendUint16(n.o.AppendUint16(nil, link), 0), snap)
	for i := 0; i+1 < len(opts); i += 2 {
		b = n.o.AppendUint16(n.o.AppendUint16(b, binary.BigEndian.Uint16(opts[i])), uint16(len(opts[i+1])))
		b = append(b, opts[i+1]...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return n.block(1, b)
}

func (n *ng) epb(id uint32, ts uint64, wire uint32, data []byte) *ng {
	b := n.o.AppendUint32(nil, id)
	b = n.o.AppendUint32(n.o.AppendUint32(b, uint32(ts>>32)), uint32(ts))
	b = n.o.AppendUint32(n.o.AppendUint32(b, uint32(len(data))), wire)
	return n.block(6, append(b, data...))
}

func (n *ng) spb(wire uint32, data []byte) *ng {
	return n.block(3, append(n.o.AppendUint32(nil, wire), data...))
}

func (n *ng) pb(id uint16, ts uint64, data []byte) *ng {
	b := n.o.AppendUint16(n.o.AppendUint16(nil, id), 0)
	b = n.o.AppendUint32(n.o.AppendUint32(b, uint32(ts>>32)), uint32(ts))
	b = n.o.AppendUint32(n.o.AppendUint32(b, uint32(len(data))), uint32(len(data)))
	return n.block(2, append(b, data...))
}

func code(c uint16) []byte { return binary.BigEndian.AppendUint16(nil, c) }

// TestPcapng reads what pcapgo does not write: both byte orders, timestamp
// resolutions and offsets, simple and obsolete packet blocks, blocks to
// skip, a second section.
func TestPcapng(t *testing.T) {
	for _, o := range []order{binary.LittleEndian, binary.BigEndian} {
		n := &ng{o: o}
		n.section().
			block(4, []byte{0, 0, 0, 0}).                                        // name resolution: skipped
			iface(1, 128).                                                       // microseconds
			iface(1, 0, code(9), []byte{9}, code(14), o.AppendUint64(nil, 100)). // nanoseconds, +100 s
			iface(1, 0, code(9), []byte{0x80 | 10}).                             // 2^-10 s
			iface(228, 0)                                                        // raw IPv4: skipped
		n.epb(0, 1_700_000_000_123_456, 60, frames[0]).
			epb(1, 1_700_000_000_123_456_789, 70, frames[0]).
			epb(3, 0, 4, []byte{0x45, 0, 0, 4}).
			epb(2, 1700000000<<10|512, 60, frames[0]).
			block(5, make([]byte, 12)). // statistics: skipped
			spb(1514, frames[1]).       // cut to interface 0's 128 bytes
			pb(0, 1_700_000_000_000_001, frames[0]).
			section().iface(1, 0).epb(0, 5_000_000, 60, frames[0])
		r, err := pcapfile.NewReader(bytes.NewReader(n.b.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			n, length int
			ts        time.Time
		}{
			{60, 60, time.Unix(1700000000, 123456000)},
			{60, 70, time.Unix(1700000100, 123456789)},
			{60, 60, time.Unix(1700000000, 500000000)},
			{128, 1514, time.Time{}},
			{60, 60, time.Unix(1700000000, 1000)},
			{60, 60, time.Unix(5, 0)},
		}
		for i, w := range want {
			f, err := r.Next()
			if err != nil {
				t.Fatalf("%v frame %d: %v", o, i, err)
			}
			if len(f.Data) != w.n || f.Length != w.length || !f.Timestamp.Equal(w.ts) || f.Truncated() != (w.n < w.length) {
				t.Errorf("%v frame %d: %d of %d at %v, want %+v", o, i, len(f.Data), f.Length, f.Timestamp, w)
			}
		}
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("%v: at the end: %v", o, err)
		}
		if r.Skipped != 1 || r.LinkType() != pcapfile.LinkTypeEthernet {
			t.Errorf("%v: skipped %d, link %v", o, r.Skipped, r.LinkType())
		}
	}
}

// TestBigEndianPcap reads a classic capture written on a big-endian host
// (microseconds).
func TestBigEndianPcap(t *testing.T) {
	var o order = binary.BigEndian
	b := o.AppendUint32(nil, 0xa1b2c3d4)
	b = o.AppendUint16(o.AppendUint16(b, 2), 4)
	b = o.AppendUint32(o.AppendUint32(o.AppendUint32(o.AppendUint32(b, 0), 0), 65535), 0x10000000|101) // FCS bits set
	b = o.AppendUint32(o.AppendUint32(b, 1700000000), 999999)
	b = o.AppendUint32(o.AppendUint32(b, 4), 40)
	b = append(b, 0x45, 0, 0, 40)
	link, got := readAll(t, b)
	if link != pcapfile.LinkTypeRaw || len(got) != 1 || got[0].length != 40 || !got[0].ts.Equal(time.Unix(1700000000, 999999000)) {
		t.Fatalf("%v %+v", link, got)
	}
}

// TestLongRecord: a record of more than MaxFrame bytes keeps MaxFrame of
// them, reads as truncated, and the next record still reads.
func TestLongRecord(t *testing.T) {
	var b bytes.Buffer
	w, _ := pcapfile.NewWriter(&b, 1<<24, pcapfile.LinkTypeEthernet)
	big := bytes.Repeat([]byte{7}, pcapfile.MaxFrame+1000)
	w.WriteFrame(epoch, big, 0)
	w.WriteFrame(epoch, frames[0], 0)
	r, err := pcapfile.NewReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.Next()
	if err != nil || len(f.Data) != pcapfile.MaxFrame || f.Length != len(big) || !f.Truncated() {
		t.Fatalf("%d of %d, %v", len(f.Data), f.Length, err)
	}
	if f, err = r.Next(); err != nil || !bytes.Equal(f.Data, frames[0]) {
		t.Fatalf("%d bytes, %v", len(f.Data), err)
	}
}

// TestDamaged: what makes no sense is an error naming it, and a stream cut
// short wraps io.ErrUnexpectedEOF; the error stays.
func TestDamaged(t *testing.T) {
	var o order = binary.LittleEndian
	good := (&ng{o: o}).section().iface(1, 0).epb(0, 0, 60, frames[0]).b.Bytes()
	pcapFile := pcapgoFiles(t)["pcap-nano"]
	lie := bytes.Clone(good)
	o.PutUint32(lie[len(lie)-4:], 999) // the block's trailing length
	room := (&ng{o: o}).section().iface(1, 0).b.Bytes()
	room = append(room, (&ng{o: o}).epb(0, 0, 60, frames[0]).b.Bytes()...)
	o.PutUint32(room[len(room)-4-60-8:], 1000) // captured length past the block
	for _, c := range []struct {
		name string
		data []byte
		open string // NewReader's complaint; "" if it opens
		next string // the first Next's
		eof  bool
	}{
		{"empty", nil, "magic", "", true},
		{"garbage", []byte("not a capture at all"), "not a pcap", "", false},
		{"pcap header cut", pcapFile[:20], "header", "", true},
		{"pcap version", append([]byte{0xd4, 0xc3, 0xb2, 0xa1, 3, 0}, make([]byte, 18)...), "version", "", false},
		{"pcap record cut", pcapFile[:24+16+10], "", "frame", true},
		{"pcap record header cut", pcapFile[:24+8], "", "record header", true},
		{"ng without interface", (&ng{o: o}).section().b.Bytes(), "no interface", "", false},
		{"ng packet first", (&ng{o: o}).section().epb(0, 0, 1, []byte{1}).b.Bytes(), "before any interface", "", false},
		{"ng byte order", append(bytes.Clone(good[:8]), 1, 2, 3, 4), "byte-order", "", false},
		{"ng version", func() []byte { b := bytes.Clone(good); o.PutUint16(b[12:], 2); return b }(), "version", "", false},
		{"ng trailer", lie, "", "ends with a length of 999", false},
		{"ng captured past block", room, "", "room for", false},
		{"ng cut", good[:len(good)-10], "", "", true},
		{"ng odd block length", func() []byte { b := bytes.Clone(good); o.PutUint32(b[4:], 29); return b }(), "section header of 29", "", false},
		{"ng unknown interface", (&ng{o: o}).section().iface(1, 0).epb(5, 0, 1, []byte{1}).b.Bytes(), "", "interface 5", false},
		{"ng tsresol", (&ng{o: o}).section().iface(1, 0, code(9), []byte{20}).b.Bytes(), "resolution", "", false},
	} {
		r, err := pcapfile.NewReader(bytes.NewReader(c.data))
		if c.open != "" || err != nil {
			if err == nil || !strings.Contains(err.Error(), c.open) || c.eof != errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s: open: %v", c.name, err)
			}
			continue
		}
		_, err = r.Next()
		if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), c.next) || c.eof != errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: next: %v", c.name, err)
		}
		if _, again := r.Next(); again != err {
			t.Errorf("%s: then %v", c.name, again)
		}
	}
}

func TestLinkTypeNames(t *testing.T) {
	for lt, want := range map[pcapfile.LinkType]string{pcapfile.LinkTypeEthernet: "Ethernet", 127: "802.11 radiotap", 300: "LinkType(300)"} {
		if lt.String() != want {
			t.Errorf("%d: %q", lt, lt.String())
		}
	}
	if pcapfile.LinkType(300).Name() != "" {
		t.Error("a name for 300")
	}
}

// BenchmarkRead reads a capture of 1,000 frames of 60 to 1514 bytes, with
// this reader and with pcapgo's (ZeroCopyReadPacketData, as capture.File
// used it).
func BenchmarkRead(b *testing.B) {
	for _, format := range []string{"pcap", "pcapng"} {
		var buf bytes.Buffer
		var write func(ci gopacket.CaptureInfo, data []byte) error
		if format == "pcap" {
			w := pcapgo.NewWriterNanos(&buf)
			w.WriteFileHeader(262144, layers.LinkTypeEthernet)
			write = w.WritePacket
		} else {
			w, _ := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
			defer w.Flush()
			write = func(ci gopacket.CaptureInfo, data []byte) error {
				err := w.WritePacket(ci, data)
				w.Flush()
				return err
			}
		}
		for i := range 1000 {
			f := frames[i%2]
			write(gopacket.CaptureInfo{Timestamp: epoch, CaptureLength: len(f), Length: len(f)}, f)
		}
		data := buf.Bytes()
		b.Run(format+"/pcapfile", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := pcapfile.NewReader(bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				for n := 0; ; n++ {
					if _, err := r.Next(); err != nil {
						if n != 1000 {
							b.Fatal(n, err)
						}
						break
					}
				}
			}
		})
		b.Run(format+"/pcapgo", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var src gopacket.ZeroCopyPacketDataSource
				if format == "pcap" {
					src, _ = pcapgo.NewReader(bytes.NewReader(data))
				} else {
					src, _ = pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{})
				}
				for n := 0; ; n++ {
					if _, _, err := src.ZeroCopyReadPacketData(); err != nil {
						if n != 1000 {
							b.Fatal(n, err)
						}
						break
					}
				}
			}
		})
	}
}
