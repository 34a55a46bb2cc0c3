package modbussim

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal pair: the simulator serves the master side, the
// code under test opens Path (the slave side, a real tty) like a serial port.
type PTY struct {
	Master *os.File
	Path   string
	slave  *os.File // kept open so the master never sees a hangup between clients
}

// OpenPTY allocates a pty pair with the slave side in raw mode.
func OpenPTY() (*PTY, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("modbussim: open /dev/ptmx: %w", err)
	}
	var n int
	rc, err := m.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err != nil {
				return
			}
			n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		})
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("modbussim: unlock pty: %w", err)
	}
	p := &PTY{Master: m, Path: "/dev/pts/" + strconv.Itoa(n)}
	s, err := os.OpenFile(p.Path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("modbussim: open %s: %w", p.Path, err)
	}
	p.slave = s
	if err := makeRaw(s); err != nil {
		p.Close()
		return nil, fmt.Errorf("modbussim: raw mode on %s: %w", p.Path, err)
	}
	return p, nil
}

func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		t, e := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if e != nil {
			ierr = e
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		ierr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return ierr
}

// Close closes both sides.
func (p *PTY) Close() error {
	if p.slave != nil {
		p.slave.Close()
	}
	return p.Master.Close()
}
