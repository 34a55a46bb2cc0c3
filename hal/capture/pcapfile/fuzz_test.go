package pcapfile_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

// FuzzReader: any bytes read without a panic, every frame within its
// bounds, errors that stay; and where pcapgo reads the same bytes, both see
// the same frames until either stops (pcapgo is stricter about lengths and
// trusts block sizes this reader checks, so the first error of either ends
// the comparison).
func FuzzReader(f *testing.F) {
	for _, b := range pcapgoFiles(f) {
		f.Add(b)
	}
	for _, o := range []order{binary.LittleEndian, binary.BigEndian} {
		f.Add((&ng{o: o}).section().iface(1, 64, code(9), []byte{0x85}).epb(0, 1<<40, 90, frames[0]).spb(60, frames[0]).
			pb(0, 7, frames[0]).block(5, make([]byte, 12)).section().iface(101, 0).epb(0, 1, 4, []byte{0x45, 0, 0, 4}).b.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := pcapfile.NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		theirs := pcapgoSource(b)
		for i := 0; ; i++ {
			fr, err := r.Next()
			if err != nil {
				if _, again := r.Next(); again != err {
					t.Fatalf("error %v, then %v", err, again)
				}
				return
			}
			if len(fr.Data) > pcapfile.MaxFrame || fr.Length < len(fr.Data) {
				t.Fatalf("frame %d: %d bytes of %d", i, len(fr.Data), fr.Length)
			}
			if theirs == nil {
				continue
			}
			data, ci, err := theirs.ReadPacketData()
			if err != nil {
				theirs = nil
				continue
			}
			if !bytes.Equal(fr.Data, data[:min(len(data), pcapfile.MaxFrame)]) || fr.Length != max(ci.Length, len(data)) {
				t.Fatalf("frame %d: %d bytes of %d; pcapgo %d of %d", i, len(fr.Data), fr.Length, len(data), ci.Length)
			}
		}
	})
}

// pcapgoSource opens b with pcapgo as capture.File did, nil if pcapgo
// refuses it.
func pcapgoSource(b []byte) interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
} {
	if bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		if r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.NgReaderOptions{}); err == nil {
			return r
		}
		return nil
	}
	if r, err := pcapgo.NewReader(bytes.NewReader(b)); err == nil {
		return r
	}
	return nil
}
