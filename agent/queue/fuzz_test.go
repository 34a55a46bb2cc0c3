package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, 1, []byte("hello")))
	f.Add(appendRecord(appendRecord(nil, 7, nil), 8, []byte{0, 1, 2}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, data, n, err := decodeRecord(b, 1<<10)
		if err != nil {
			return
		}
		if n > len(b) || n != headerSize+len(data) {
			t.Fatalf("n = %d for %d bytes, data %d", n, len(b), len(data))
		}
		if re := appendRecord(nil, seq, data); !bytes.Equal(re, b[:n]) {
			t.Fatal("decoded record does not re-encode to its bytes")
		}
	})
}

// FuzzOpen feeds arbitrary bytes as a segment file: Open must not fail or
// panic, and whatever it hands out re-encodes to a valid record.
func FuzzOpen(f *testing.F) {
	f.Add(appendRecord(appendRecord(nil, 1, []byte("a")), 2, []byte("bb")))
	f.Add(append(appendRecord(nil, 5, []byte("x")), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "e-0000000000000001.seg"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := Open(dir, Options{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		var last uint64
		for range 1000 {
			q.mu.Lock()
			r, err := q.pick()
			q.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if r == nil {
				break
			}
			if r.Seq <= last {
				t.Fatalf("seq %d after %d", r.Seq, last)
			}
			last = r.Seq
		}
	})
}
