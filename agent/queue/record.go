package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// headerSize is the record header: payload length (u32), CRC-32C (u32) of
// the sequence and payload, sequence (u64), all little endian.
const headerSize = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors a record decoder reports. Open treats any of them at the end of a
// segment as a torn tail.
var (
	errShort    = errors.New("queue: short record")
	errChecksum = errors.New("queue: record checksum mismatch")
	errTooLarge = errors.New("queue: record length over the limit")
)

// appendRecord encodes one record onto buf.
func appendRecord(buf []byte, seq uint64, data []byte) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, headerSize)...)
	buf = append(buf, data...)
	h := buf[start : start+headerSize]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(data)))
	binary.LittleEndian.PutUint64(h[8:16], seq)
	crc := crc32.Update(0, castagnoli, h[8:16])
	crc = crc32.Update(crc, castagnoli, data)
	binary.LittleEndian.PutUint32(h[4:8], crc)
	return buf
}

// decodeRecord decodes the record at the start of b. It returns the
// sequence, the payload (aliasing b) and the record's total size. maxData
// bounds the payload length, so a corrupt length cannot ask for gigabytes.
func decodeRecord(b []byte, maxData int) (seq uint64, data []byte, n int, err error) {
	if len(b) < headerSize {
		return 0, nil, 0, errShort
	}
	l := binary.LittleEndian.Uint32(b[0:4])
	if uint64(l) > uint64(maxData) {
		return 0, nil, 0, fmt.Errorf("%w: %d bytes", errTooLarge, l)
	}
	n = headerSize + int(l)
	if len(b) < n {
		return 0, nil, 0, errShort
	}
	seq = binary.LittleEndian.Uint64(b[8:16])
	crc := crc32.Update(0, castagnoli, b[8:16])
	crc = crc32.Update(crc, castagnoli, b[headerSize:n])
	if crc != binary.LittleEndian.Uint32(b[4:8]) {
		return 0, nil, 0, errChecksum
	}
	return seq, b[headerSize:n], n, nil
}
