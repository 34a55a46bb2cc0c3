package modbus

import (
	"errors"
	"io"
	"os"
	"time"
)

// Optional abilities of a port, checked once when a Bus or Server is made.
type (
	// readTimeouter is go.bug.st/serial's way: Read returns 0, nil on timeout.
	readTimeouter interface{ SetReadTimeout(time.Duration) error }
	// readDeadliner is os.File's and net.Conn's way.
	readDeadliner interface{ SetReadDeadline(time.Time) error }
	// inputResetter drops unread input (tcflush on a tty).
	inputResetter interface{ ResetInputBuffer() error }
)

// timedReader reads from a port with a per-call timeout, whichever way the
// port supports it. A port with neither ability blocks in Read.
type timedReader struct {
	r  io.Reader
	to readTimeouter
	dl readDeadliner
}

func newTimedReader(r io.Reader) timedReader {
	t := timedReader{r: r}
	t.to, _ = r.(readTimeouter)
	if t.to == nil {
		t.dl, _ = r.(readDeadliner)
	}
	return t
}

// read returns 0, nil when nothing arrived within d.
func (t timedReader) read(p []byte, d time.Duration) (int, error) {
	if d <= 0 {
		d = time.Millisecond
	}
	switch {
	case t.to != nil:
		if err := t.to.SetReadTimeout(d); err != nil {
			return 0, err
		}
	case t.dl != nil:
		if err := t.dl.SetReadDeadline(time.Now().Add(d)); err != nil {
			return 0, err
		}
	}
	n, err := t.r.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return n, err
}

func writeAll(w io.Writer, b []byte) error {
	for len(b) > 0 {
		n, err := w.Write(b)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// Silence returns the Modbus RTU inter-frame silence for a line: 3.5
// character times, fixed at 1.75 ms above 19200 baud as the serial line
// specification recommends. charBits is start+data+parity+stop bits.
func Silence(baud, charBits int) time.Duration {
	if baud <= 0 {
		baud = 9600
	}
	if charBits <= 0 {
		charBits = 11
	}
	if baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(float64(time.Second) * 3.5 * float64(charBits) / float64(baud))
}

// WireTime returns how long n bytes take on a line at baud with charBits bits
// per character (start+data+parity+stop).
func WireTime(n, baud, charBits int) time.Duration {
	if baud <= 0 {
		return 0
	}
	return time.Duration(int64(n) * int64(charBits) * int64(time.Second) / int64(baud))
}
