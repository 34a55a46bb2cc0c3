package bundle_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/policy/dsse"
)

// agentLike is a binary-like payload: compressible, several chunks long.
func agentLike() string {
	var b strings.Builder
	for i := 0; b.Len() < 300<<10; i++ {
		b.WriteString("linkguard\x00\x7fELF runtime.gopark policy.match ")
		b.WriteByte(byte(i))
	}
	return b.String()
}

func readAll(t *testing.T, b []byte, p bundle.Policy) (map[string]string, error) {
	t.Helper()
	r, err := bundle.NewReader(bytes.NewReader(b), p)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for {
		pl, rd, err := r.Next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		data, err := io.ReadAll(rd)
		got[pl.Name] = string(data)
		if err != nil {
			return got, err
		}
	}
}

func TestCompressedRoundTrip(t *testing.T) {
	rel := bundletest.NewRelease(t)
	bin := agentLike()
	plain := rel.Build(t, bundletest.Spec{Version: "1.2.0", Binary: bin})
	b := rel.Build(t, bundletest.Spec{Version: "1.2.0", Binary: bin, Compression: bundle.Zstd,
		Extra: map[string]string{"config/default.yaml": "device: {}\n"}})
	if len(b)*4 > len(plain) {
		t.Errorf("compressed bundle %d bytes, uncompressed %d", len(b), len(plain))
	}
	m, err := bundle.Verify(bytes.NewReader(b), pol(rel))
	if err != nil {
		t.Fatal(err)
	}
	p := m.Payloads[0]
	sum := sha256.Sum256([]byte(bin))
	if m.Format != 2 || p.Compression != bundle.Zstd || p.Size != int64(len(bin)) || p.SHA256 != hex.EncodeToString(sum[:]) ||
		p.StoredSize <= 0 || p.StoredSize >= p.Size || m.Payloads[1].Compression != bundle.None {
		t.Fatalf("manifest %+v", m)
	}
	got, err := readAll(t, b, pol(rel))
	if err != nil || got["linkguard"] != bin || got["config/default.yaml"] != "device: {}\n" {
		t.Fatalf("read back %d bytes of binary, %q: %v", len(got["linkguard"]), got["config/default.yaml"], err)
	}
	// An uncompressed bundle is still format 1, read as before.
	if m, err := bundle.Verify(bytes.NewReader(plain), pol(rel)); err != nil || m.Format != 1 {
		t.Fatalf("plain bundle: format %d, %v", m.Format, err)
	}
	// A second signer copies it as stored: still compressed, still valid.
	rel2 := bundletest.NewRelease(t)
	co := rel2.Cosign(t, b)
	if len(co) > len(b)+200 {
		t.Fatalf("cosigned bundle grew from %d to %d bytes", len(b), len(co))
	}
	p2 := pol(rel)
	p2.Keys, p2.Threshold = bundletest.Ring(rel, rel2), 2
	if got, err := readAll(t, co, p2); err != nil || got["linkguard"] != bin {
		t.Fatalf("cosigned: %v", err)
	}
}

// hostile builds a bundle whose manifest (signed by rel) claims size and
// sum for the binary, stored as the zstd stream given, with a correct chunk
// table unless edit changes the stored bytes afterwards.
func hostile(t testing.TB, rel bundletest.Release, c bundle.Compression, stream []byte, size int64, sum []byte, edit func(stored []byte) []byte) []byte {
	t.Helper()
	var stored []byte
	for off := 0; off < len(stream); off += bundle.ChunkSize {
		h := sha256.Sum256(stream[off:min(off+bundle.ChunkSize, len(stream))])
		stored = append(stored, h[:]...)
	}
	table := sha256.Sum256(stored)
	stored = append(stored, stream...)
	if edit != nil {
		stored = edit(stored)
	}
	m := bundle.Manifest{
		Format: 2, Product: bundle.BinaryName, Version: "1.2.0", Arch: "amd64",
		Created: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
		Payloads: []bundle.Payload{{
			Name: bundle.BinaryName, Size: size, SHA256: hex.EncodeToString(sum), Mode: 0o755,
			Compression: c, StoredSize: int64(len(stream)), StoredSHA256: hex.EncodeToString(table[:]),
		}},
	}
	return rel.Sign(t, m, stored)
}

func zstdOf(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

// countingWriter is a slot that counts what it was given.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(b []byte) (int, error) { w.n += int64(len(b)); return len(b), nil }

func copyBinary(t *testing.T, b []byte, p bundle.Policy) (int64, error) {
	t.Helper()
	r, err := bundle.NewReader(bytes.NewReader(b), p)
	if err != nil {
		return 0, err
	}
	_, rd, err := r.Next()
	if err != nil {
		return 0, err
	}
	var w countingWriter
	_, err = io.Copy(&w, rd)
	if err == nil {
		_, _, err = r.Next()
		if err == io.EOF {
			err = nil
		}
	}
	return w.n, err
}

func TestCompressedRefusals(t *testing.T) {
	rel := bundletest.NewRelease(t)
	body := []byte(agentLike())
	sum := sha256.Sum256(body)
	stream := zstdOf(t, body)
	const signed = 1000
	bomb := sha256.Sum256(body[:signed])
	// A real bomb: 64 MiB of zeros in a few KiB, against a signed size of
	// 1000 bytes.
	zeros := zstdOf(t, make([]byte, 64<<20))
	tests := []struct {
		name     string
		b        []byte
		want     error
		maxWrite int64 // bytes the "slot" may have received
	}{
		{"ok", hostile(t, rel, bundle.Zstd, stream, int64(len(body)), sum[:], nil), nil, int64(len(body))},
		{"bomb: decompresses past its signed size", hostile(t, rel, bundle.Zstd, stream, signed, bomb[:], nil), bundle.ErrTooLarge, signed},
		{"bomb of zeros", hostile(t, rel, bundle.Zstd, zeros, signed, bomb[:], nil), bundle.ErrTooLarge, signed},
		{"decompresses short of its signed size", hostile(t, rel, bundle.Zstd, stream, int64(len(body))+1, sum[:], nil), bundle.ErrFormat, int64(len(body))},
		{"decompressed sha256 wrong", hostile(t, rel, bundle.Zstd, stream, int64(len(body)), bomb[:], nil), bundle.ErrDigest, int64(len(body))},
		{"truncated stream", hostile(t, rel, bundle.Zstd, stream, int64(len(body)), sum[:], func(s []byte) []byte { return s[:len(s)-10] }), bundle.ErrFormat, int64(len(body))},
		{"truncated frame, signed as such", hostile(t, rel, bundle.Zstd, stream[:len(stream)-10], int64(len(body)), sum[:], nil), bundle.ErrFormat, int64(len(body))},
		{"unknown compression", hostile(t, rel, "xz", stream, int64(len(body)), sum[:], nil), bundle.ErrCompression, 0},
		{"tampered chunk table", hostile(t, rel, bundle.Zstd, stream, int64(len(body)), sum[:], func(s []byte) []byte { s[3] ^= 1; return s }), bundle.ErrDigest, 0},
		{"tampered first chunk", hostile(t, rel, bundle.Zstd, stream, int64(len(body)), sum[:], func(s []byte) []byte {
			s[len(s)-len(stream)+5] ^= 1
			return s
		}), bundle.ErrDigest, 0},
		{"tampered last byte", hostile(t, rel, bundle.Zstd, stream, int64(len(body)), sum[:], func(s []byte) []byte { s[len(s)-1] ^= 1; return s }), bundle.ErrDigest, int64(len(body))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := copyBinary(t, tt.b, pol(rel))
			t.Log(err)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if n > tt.maxWrite {
				t.Errorf("wrote %d bytes, bound %d", n, tt.maxWrite)
			}
			if _, err := bundle.Verify(bytes.NewReader(tt.b), pol(rel)); !errors.Is(err, tt.want) {
				t.Errorf("Verify: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestTamperedNeverDecoded checks the order: a chunk that does not match
// the signed table never reaches the decoder, wherever it is in the stream.
// The body is random, so zstd stores it nearly as is and what the "slot"
// received shows how far decoding got: never into the tampered chunk.
func TestTamperedNeverDecoded(t *testing.T) {
	rel := bundletest.NewRelease(t)
	body := make([]byte, 300<<10)
	rand.Read(body)
	sum := sha256.Sum256(body)
	stream := zstdOf(t, body)
	if len(stream) < 4*bundle.ChunkSize {
		t.Fatalf("stream of %d bytes, want several chunks", len(stream))
	}
	for _, off := range []int{0, bundle.ChunkSize + 7, 3*bundle.ChunkSize - 1, len(stream) - 1} {
		b := hostile(t, rel, bundle.Zstd, stream, int64(len(body)), sum[:], func(s []byte) []byte {
			s[len(s)-len(stream)+off] ^= 0x80
			return s
		})
		n, err := copyBinary(t, b, pol(rel))
		if !errors.Is(err, bundle.ErrDigest) {
			t.Errorf("tampered at %d: %v, want ErrDigest", off, err)
		}
		if chunkStart := int64(off / bundle.ChunkSize * bundle.ChunkSize); n > chunkStart {
			t.Errorf("tampered at %d: %d bytes decoded, past the start of the tampered chunk (%d)", off, n, chunkStart)
		}
	}
}

func TestCompressionManifest(t *testing.T) {
	rel := bundletest.NewRelease(t)
	body := []byte("#!/bin/sh\n")
	sum := sha256.Sum256(body)
	stream := zstdOf(t, body)
	b := hostile(t, rel, bundle.Zstd, stream, int64(len(body)), sum[:], nil)
	for name, edit := range map[string]func(m map[string]any, p map[string]any){
		"compression in format 1":      func(m, p map[string]any) { m["format"] = 1 },
		"stored_size without zstd":     func(m, p map[string]any) { delete(p, "compression") },
		"stored_size 0":                func(m, p map[string]any) { p["stored_size"] = 0 },
		"stored_size past the cap":     func(m, p map[string]any) { p["stored_size"] = int64(1) << 40 },
		"stored_sha256 not hex":        func(m, p map[string]any) { p["stored_sha256"] = "zz" },
		"compression named in capital": func(m, p map[string]any) { p["compression"] = "ZSTD" },
	} {
		t.Run(name, func(t *testing.T) {
			bad := reframe(t, b, func(e *canonical) {
				var m map[string]any
				json.Unmarshal(e.Payload, &m)
				p := m["payloads"].([]any)[0].(map[string]any)
				edit(m, p)
				e.Payload, _ = json.Marshal(m)
				raw, err := dsse.Sign(bundle.PayloadType, e.Payload, rel.Key)
				if err != nil {
					t.Fatal(err)
				}
				json.Unmarshal(raw, e)
			})
			if _, err := bundle.NewReader(bytes.NewReader(bad), pol(rel)); !errors.Is(err, bundle.ErrFormat) && !errors.Is(err, bundle.ErrTooLarge) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
}

// FuzzDecompress feeds arbitrary streams to the decoder as if signed (the
// chunk table is made to match), so the fuzzer reaches zstd and the bounds
// rather than the hash checks: whatever it is given, no more than the signed
// size comes out, and only the signed bytes verify.
func FuzzDecompress(f *testing.F) {
	rel := bundletest.NewRelease(f)
	body := []byte(agentLike()[:5000])
	f.Add(zstdOf(f, body), int64(len(body)))
	f.Add(zstdOf(f, make([]byte, 1<<20)), int64(100))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}, int64(10))
	sum := sha256.Sum256(body)
	f.Fuzz(func(t *testing.T, stream []byte, size int64) {
		if len(stream) == 0 || size < 0 || size > 1<<20 {
			return
		}
		b := hostile(t, rel, bundle.Zstd, stream, size, sum[:], nil)
		n, err := copyBinary(t, b, pol(rel))
		if n > size {
			t.Fatalf("wrote %d bytes, signed size %d", n, size)
		}
		if err == nil && size != int64(len(body)) {
			t.Fatalf("verified %d bytes that are not the signed ones", n)
		}
	})
}
