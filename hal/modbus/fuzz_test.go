package modbus

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// FuzzScanResponse feeds arbitrary line bytes to the response scanner the
// Bus uses: it must never panic, and whatever it accepts must be a frame of
// the wanted shape with a good CRC.
func FuzzScanResponse(f *testing.F) {
	f.Add(appendCRC([]byte{0x02, 0x03, 0x02, 0x12, 0x34}), byte(2), byte(3), uint16(1))
	f.Add(append([]byte{0xFF, 0x02, 0x03}, appendCRC([]byte{0x02, 0x83, 0x02})...), byte(2), byte(3), uint16(1))
	f.Add(append([]byte{0x01}, appendCRC([]byte{0x01, 0x01, 0x01, 0x05})...), byte(1), byte(1), uint16(3))
	f.Add(appendCRC([]byte{0x09, 0x05, 0x00, 0x01, 0xFF, 0x00}), byte(9), byte(5), uint16(1))
	f.Fuzz(func(t *testing.T, line []byte, slave, fc byte, qty uint16) {
		want := responseLen(FunctionCode(fc), qty%MaxReadRegisters+1)
		start, end, discard, crcErrs, found := scanResponse(line, slave, FunctionCode(fc), want)
		if discard < 0 || discard > len(line) || crcErrs < 0 {
			t.Fatalf("discard %d crcErrs %d for %d bytes", discard, crcErrs, len(line))
		}
		if !found {
			return
		}
		fr := line[start:end]
		if !crcOK(fr) || fr[0] != slave || (fr[1] != fc && fr[1] != fc|0x80) {
			t.Fatalf("accepted bad frame % x", fr)
		}
		if fr[1] == fc && len(fr) != want || fr[1] != fc && len(fr) != exceptionLen {
			t.Fatalf("accepted frame of length %d, want %d", len(fr), want)
		}
	})
}

// FuzzServer feeds arbitrary request bytes to the slave side: it must never
// panic, and every answer it writes must carry a good CRC.
func FuzzServer(f *testing.F) {
	f.Add(appendCRC([]byte{0x07, 0x03, 0x00, 0x00, 0x00, 0x0A}))
	f.Add(appendCRC([]byte{0x07, 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0, 1, 0, 2}))
	f.Add(appendCRC([]byte{0x07, 0x0F, 0x00, 0x00, 0x00, 0x0A, 0x02, 0xFF, 0x03}))
	f.Add(append([]byte{0x07, 0x10, 0x00}, appendCRC([]byte{0x07, 0x05, 0x00, 0x02, 0xFF, 0x00})...))
	f.Add(appendCRC([]byte{0x00, 0x05, 0x00, 0x02, 0xFF, 0x00}))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		srv := &Server{Slaves: map[byte]Slave{7: &regSlave{}}}
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), &out}
		_ = srv.Serve(context.Background(), rw)
		b := out.Bytes()
		for len(b) > 0 {
			start, end, _, _, found := scanResponse(b, 7, FunctionCode(b[1%len(b)]&0x7F), len(b))
			if !found {
				// Responses are back to back; find each by trying lengths.
				ok := false
				for n := exceptionLen; n <= len(b); n++ {
					if crcOK(b[:n]) {
						b, ok = b[n:], true
						break
					}
				}
				if !ok {
					t.Fatalf("server wrote a frame with a bad CRC: % x", out.Bytes())
				}
				continue
			}
			b = b[end:]
			_ = start
		}
	})
}
