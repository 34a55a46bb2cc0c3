package provision

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// MaxLine bounds one line, so a noisy cable cannot make either side allocate
// without limit. Bundle chunks are sized to fit.
const MaxLine = 64 << 10

// ChunkSize is the raw size of one bundle chunk (base64 makes it 4/3 larger).
const ChunkSize = 32 << 10

// Errors.
var (
	ErrChecksum = errors.New("provision: line checksum mismatch")
	ErrLine     = errors.New("provision: malformed line")
)

// Format encodes one line: fields separated by single spaces, then " *" and the
// CRC-32 (IEEE) of everything before it in 8 hex digits, then "\n".
func Format(fields ...string) []byte {
	var b bytes.Buffer
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f)
	}
	sum := crc32.ChecksumIEEE(b.Bytes())
	fmt.Fprintf(&b, " *%08x\n", sum)
	return b.Bytes()
}

// Parse decodes one line (without or with its trailing newline).
func Parse(line []byte) ([]string, error) {
	line = bytes.TrimRight(line, "\r\n")
	i := bytes.LastIndex(line, []byte(" *"))
	if i < 1 || len(line)-i != 10 {
		return nil, fmt.Errorf("%w: no checksum", ErrLine)
	}
	want, err := strconv.ParseUint(string(line[i+2:]), 16, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: checksum %q", ErrLine, line[i+2:])
	}
	body := line[:i]
	if crc32.ChecksumIEEE(body) != uint32(want) {
		return nil, ErrChecksum
	}
	for _, c := range body {
		if c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("%w: byte %#x", ErrLine, c)
		}
	}
	fields := strings.Split(string(body), " ")
	for _, f := range fields {
		if f == "" {
			return nil, fmt.Errorf("%w: empty field", ErrLine)
		}
	}
	return fields, nil
}

// lineReader reads bounded lines.
type lineReader struct{ br *bufio.Reader }

func newLineReader(r io.Reader) *lineReader { return &lineReader{bufio.NewReaderSize(r, 4096)} }

// next returns the next non-empty line; a line longer than MaxLine is skipped
// whole and reported as ErrLine.
func (lr *lineReader) next() ([]byte, error) {
	var buf []byte
	tooLong := false
	for {
		frag, err := lr.br.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, frag...)
			if len(buf) > MaxLine {
				tooLong, buf = true, nil
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return nil, err
		case tooLong:
			return nil, fmt.Errorf("%w: longer than %d bytes", ErrLine, MaxLine)
		}
		if len(bytes.TrimSpace(buf)) == 0 {
			buf = buf[:0]
			continue
		}
		return buf, nil
	}
}
