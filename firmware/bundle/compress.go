package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Compression is how a payload is stored in a bundle. The slot always holds
// the decompressed bytes; compression only shortens the transfer (a 115200
// baud serial line moves about 11 KiB/s).
type Compression string

// The compressions a device knows. A manifest naming any other is refused
// (ErrCompression) before a byte of the payload is read.
const (
	None Compression = ""
	Zstd Compression = "zstd"
)

func (c Compression) String() string {
	if c == None {
		return "none"
	}
	return string(c)
}

// ParseCompression reads a compression name as written on a command line:
// "none" (or "") and "zstd".
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "", "none":
		return None, nil
	case string(Zstd):
		return Zstd, nil
	}
	return None, fmt.Errorf("%w: %q (known: none, zstd)", ErrCompression, s)
}

// ErrCompression: a payload names a compression this device cannot decode.
var ErrCompression = errors.New("bundle: unknown compression")

// How a compressed payload is stored, and what decoding it may cost.
//
// A compressed payload is stored as a table of the sha256 of each ChunkSize
// chunk of the compressed stream (the last chunk may be shorter), followed
// by the compressed stream. The manifest signs stored_size (the compressed
// stream's length, without the table) and stored_sha256 (the sha256 of the
// table), besides size and sha256 of the decompressed bytes. The order of
// checks is what makes it safe to decompress a hostile file:
//
//  1. stored_sha256 is checked when the table has been read, before any
//     chunk is;
//  2. each chunk's sha256 from the checked table is checked when the whole
//     chunk has been read, before the decoder is handed any of its bytes:
//     the decoder only ever parses bytes the release keys signed;
//  3. the decoder's output is cut at the signed size (one byte more is
//     ErrTooLarge, without being handed on) and hashed as it streams out;
//     its sha256 is checked at its end, so a consumer (slot.Install) that
//     copies it to completion without error has the signed bytes, and one
//     that fails never marks the slot.
//
// Memory is one chunk, the table (at most 32 bytes per 64 KiB of the
// payload cap: 32 KiB for 64 MiB) and the decoder's window, capped at
// MaxWindow; nothing is held whole.
const (
	ChunkSize = 64 << 10
	// MaxWindow caps the zstd window a device accepts (the decoder's
	// history buffer). It is what the encoder uses at SpeedBestCompression.
	MaxWindow = 8 << 20
)

// tableLen is the length of the chunk table of a compressed stream of n bytes.
func tableLen(n int64) int64 { return (n + ChunkSize - 1) / ChunkSize * sha256.Size }

// compressFile compresses the file at path into memory (the operator's
// machine builds bundles, not the device) and returns the stored form (table
// and stream) with the decompressed size and sha256, read in the same pass
// so they describe exactly the bytes compressed.
func compressFile(path string, c Compression) (stored []byte, streamLen int64, sum []byte, size int64, err error) {
	if c != Zstd {
		return nil, 0, nil, 0, fmt.Errorf("bundle: %s: %w: %q", path, ErrCompression, string(c))
	}
	var stream bytes.Buffer
	enc, err := zstd.NewWriter(&stream, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(MaxWindow), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, 0, nil, 0, fmt.Errorf("bundle: zstd: %w", err)
	}
	sum, size, err = hashFile(path, enc)
	if err != nil {
		return nil, 0, nil, 0, err
	}
	if err := enc.Close(); err != nil {
		return nil, 0, nil, 0, fmt.Errorf("bundle: zstd: %w", err)
	}
	s := stream.Bytes()
	out := make([]byte, 0, tableLen(int64(len(s)))+int64(len(s)))
	for off := 0; off < len(s); off += ChunkSize {
		h := sha256.Sum256(s[off:min(off+ChunkSize, len(s))])
		out = append(out, h[:]...)
	}
	return append(out, s...), int64(len(s)), sum, size, nil
}

// chunkReader yields the compressed stream of one payload, a chunk at a
// time, each only once its sha256 matched the signed table. It reads the
// table on its first Read.
type chunkReader struct {
	r         io.Reader // the stored bytes: table, then stream
	name      string
	tableSum  []byte // the signed stored_sha256
	streamLen int64
	copyTo    io.Writer // if set, receives the stored bytes once checked (Cosign)

	table []byte
	next  int   // index of the next chunk to read
	read  int64 // stream bytes read so far
	buf   []byte
	cur   []byte // checked bytes not yet handed out
	err   error
}

func (cr *chunkReader) Read(b []byte) (int, error) {
	for len(cr.cur) == 0 {
		if cr.err != nil {
			return 0, cr.err
		}
		cr.err = cr.fill()
	}
	n := copy(b, cr.cur)
	cr.cur = cr.cur[n:]
	return n, nil
}

// fill reads and checks the table (first call) or the next chunk.
func (cr *chunkReader) fill() error {
	if cr.table == nil {
		cr.table = make([]byte, tableLen(cr.streamLen))
		if _, err := io.ReadFull(cr.r, cr.table); err != nil {
			return cr.short(err)
		}
		if h := sha256.Sum256(cr.table); !bytes.Equal(h[:], cr.tableSum) {
			return fmt.Errorf("%w: payload %s: chunk table (stored_sha256)", ErrDigest, cr.name)
		}
		if err := cr.copy(cr.table); err != nil {
			return err
		}
		cr.buf = make([]byte, min(ChunkSize, cr.streamLen))
		return nil
	}
	if cr.read == cr.streamLen {
		return io.EOF
	}
	n := min(ChunkSize, cr.streamLen-cr.read)
	chunk := cr.buf[:n]
	if _, err := io.ReadFull(cr.r, chunk); err != nil {
		return cr.short(err)
	}
	want := cr.table[cr.next*sha256.Size : (cr.next+1)*sha256.Size]
	if h := sha256.Sum256(chunk); !bytes.Equal(h[:], want) {
		return fmt.Errorf("%w: payload %s: compressed chunk %d", ErrDigest, cr.name, cr.next)
	}
	if err := cr.copy(chunk); err != nil {
		return err
	}
	cr.next++
	cr.read += n
	cr.cur = chunk
	return nil
}

func (cr *chunkReader) copy(b []byte) error {
	if cr.copyTo == nil {
		return nil
	}
	if _, err := cr.copyTo.Write(b); err != nil {
		return fmt.Errorf("bundle: write: %w", err)
	}
	return nil
}

func (cr *chunkReader) short(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: payload %s: %w", ErrFormat, cr.name, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("bundle: payload %s: %w", cr.name, err)
}

// decodedReader is a compressed payload's decompressed bytes, at most size
// of them. It reads one byte past size to tell a stream that decompresses to
// more (a bomb, refused with ErrTooLarge, the extra byte never handed on)
// from one that ends there, and then requires the whole stored stream to
// have been consumed.
type decodedReader struct {
	cr   *chunkReader
	dec  *zstd.Decoder
	left int64
	name string
	err  error
}

func newDecodedReader(cr *chunkReader, size int64) *decodedReader {
	return &decodedReader{cr: cr, left: size, name: cr.name}
}

// start checks the table and the first chunk, and only then makes the
// decoder (which reads the frame header at once).
func (d *decodedReader) start() error {
	if len(d.cr.cur) == 0 {
		for d.cr.err == nil && len(d.cr.cur) == 0 {
			d.cr.err = d.cr.fill()
		}
		if d.cr.err != nil && d.cr.err != io.EOF {
			return d.cr.err
		}
	}
	dec, err := zstd.NewReader(d.cr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(MaxWindow), zstd.WithDecoderMaxMemory(MaxWindow))
	if err != nil {
		return d.wrap(err)
	}
	d.dec = dec
	return nil
}

func (d *decodedReader) Read(b []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.dec == nil {
		if d.err = d.start(); d.err != nil {
			return 0, d.err
		}
	}
	if d.left == 0 {
		d.err = d.finish()
		return 0, d.err
	}
	if int64(len(b)) > d.left {
		b = b[:d.left]
	}
	n, err := d.dec.Read(b)
	d.left -= int64(n)
	if err == io.EOF {
		if d.left > 0 {
			d.err = fmt.Errorf("%w: payload %s: decompresses to %d bytes fewer than signed", ErrFormat, d.name, d.left)
		} else {
			d.err = d.finish()
		}
	} else if err != nil {
		d.err = d.wrap(err)
	}
	if d.err != nil {
		d.dec.Close()
	}
	return n, d.err
}

// finish checks, at the signed size, that the stream ends there and that it
// was the whole of the stored stream.
func (d *decodedReader) finish() error {
	defer d.dec.Close()
	var one [1]byte
	n, err := d.dec.Read(one[:])
	if n > 0 {
		return fmt.Errorf("%w: payload %s: decompresses to more than its signed size", ErrTooLarge, d.name)
	}
	if err != io.EOF {
		return d.wrap(err)
	}
	if m, err := d.cr.Read(one[:]); m > 0 || err != io.EOF {
		if err != nil && err != io.EOF {
			return err
		}
		return fmt.Errorf("%w: payload %s: compressed data after the end of the stream", ErrFormat, d.name)
	}
	return io.EOF
}

// wrap keeps the chunk reader's own errors (ErrDigest, ErrFormat) and calls
// anything else the decoder says malformed.
func (d *decodedReader) wrap(err error) error {
	if cerr := d.cr.err; cerr != nil && cerr != io.EOF {
		return cerr // the decoder may not wrap what its source said
	}
	if errors.Is(err, ErrDigest) || errors.Is(err, ErrFormat) || errors.Is(err, ErrTooLarge) {
		return err
	}
	return fmt.Errorf("%w: payload %s: zstd: %w", ErrFormat, d.name, err)
}

// checkStored validates a payload's compression fields against the caps.
func (p Payload) checkStored(i int, maxSize int64) error {
	switch p.Compression {
	case None:
		if p.StoredSize != 0 || p.StoredSHA256 != "" {
			return fmt.Errorf("%w: payloads[%d]: stored_size and stored_sha256 without compression", ErrFormat, i)
		}
		return nil
	case Zstd:
	default:
		return fmt.Errorf("%w: %w: payloads[%d]: %q", ErrFormat, ErrCompression, i, string(p.Compression))
	}
	if p.StoredSize <= 0 || p.StoredSize > maxSize {
		return fmt.Errorf("%w: payloads[%d]: stored_size %d", ErrTooLarge, i, p.StoredSize)
	}
	if !isSHA256(p.StoredSHA256) {
		return fmt.Errorf("%w: payloads[%d]: stored_sha256 %q", ErrFormat, i, p.StoredSHA256)
	}
	return nil
}

// stored is how many bytes of the bundle the payload takes.
func (p Payload) stored() int64 {
	if p.Compression == None {
		return p.Size
	}
	return tableLen(p.StoredSize) + p.StoredSize
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && hex.EncodeToString(b) == s
}
