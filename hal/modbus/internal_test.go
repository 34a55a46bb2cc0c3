package modbus

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCRCKnownVector(t *testing.T) {
	// Read holding registers 0..9 of slave 1: the Modbus spec example frame.
	frame := appendCRC([]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A})
	if got, want := frame[6:], []byte{0xC5, 0xCD}; got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("crc bytes = % x, want % x", got, want)
	}
	if !crcOK(frame) {
		t.Fatal("crcOK rejects its own frame")
	}
	frame[3] ^= 1
	if crcOK(frame) {
		t.Fatal("crcOK accepts a corrupted frame")
	}
}

func TestSilence(t *testing.T) {
	if got := Silence(9600, 11); got < 4*time.Millisecond || got > 4100*time.Microsecond {
		t.Errorf("Silence(9600, 11) = %v, want ~4.01ms", got)
	}
	if got := Silence(115200, 10); got != 1750*time.Microsecond {
		t.Errorf("Silence(115200) = %v, want 1.75ms", got)
	}
}

func TestScanResponseResync(t *testing.T) {
	good := appendCRC([]byte{0x02, 0x03, 0x02, 0x12, 0x34})
	bad := append([]byte(nil), good...)
	bad[3] ^= 0xFF
	cases := []struct {
		name      string
		in        []byte
		wantStart int
		found     bool
	}{
		{"clean", good, 0, true},
		{"junk before", append([]byte{0xAA, 0x02, 0x55}, good...), 3, true},
		{"fake header before", append([]byte{0x02, 0x03, 0x7F}, good...), 3, true},
		{"bad crc then good", append(append([]byte(nil), bad...), good...), len(bad), true},
		{"only bad crc", bad, 0, false},
		{"exception", appendCRC([]byte{0x02, 0x83, 0x02}), 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start, end, _, _, found := scanResponse(c.in, 0x02, ReadHoldingRegisters, len(good))
			if found != c.found {
				t.Fatalf("found = %v, want %v", found, c.found)
			}
			if found && (start != c.wantStart || !crcOK(c.in[start:end])) {
				t.Fatalf("frame at [%d:%d], want start %d", start, end, c.wantStart)
			}
		})
	}
}

// loopPort answers each request written to it with the server's response,
// in memory: for allocation tests and fuzzing the server's request path.
type loopPort struct {
	srv  *Server
	resp []byte
}

func (p *loopPort) Write(b []byte) (int, error) {
	start, end, _, _, found := scanRequest(b, func(id byte) bool { return p.srv.Slaves[id] != nil })
	if found {
		p.resp = p.srv.handle(b[start:end])
	}
	return len(b), nil
}

func (p *loopPort) Read(b []byte) (int, error) {
	n := copy(b, p.resp)
	p.resp = p.resp[n:]
	return n, nil
}

func (p *loopPort) SetReadTimeout(time.Duration) error { return nil }

type regSlave struct {
	regs  [64]uint16
	coils [32]bool
}

func (s *regSlave) ReadBits(fc FunctionCode, addr uint16, dst []bool) error {
	if int(addr)+len(dst) > len(s.coils) {
		return &Exception{fc, IllegalDataAddress}
	}
	copy(dst, s.coils[addr:])
	return nil
}

func (s *regSlave) ReadRegisters(fc FunctionCode, addr uint16, dst []uint16) error {
	if int(addr)+len(dst) > len(s.regs) {
		return &Exception{fc, IllegalDataAddress}
	}
	copy(dst, s.regs[addr:])
	return nil
}

func (s *regSlave) WriteBits(addr uint16, src []bool) error {
	if int(addr)+len(src) > len(s.coils) {
		return &Exception{WriteMultipleCoils, IllegalDataAddress}
	}
	copy(s.coils[addr:], src)
	return nil
}

func (s *regSlave) WriteRegisters(addr uint16, src []uint16) error {
	if int(addr)+len(src) > len(s.regs) {
		return &Exception{WriteMultipleRegisters, IllegalDataAddress}
	}
	copy(s.regs[addr:], src)
	return nil
}

func TestTransactionAllocatesNothing(t *testing.T) {
	sl := &regSlave{}
	for i := range sl.regs {
		sl.regs[i] = uint16(i)
	}
	port := &loopPort{srv: &Server{Slaves: map[byte]Slave{7: sl}}}
	bus := NewBus(port, Config{Baud: 115200, CharBits: 10, Timeout: time.Second}, nil)
	bus.silence = 0 // the loop port has no line to keep quiet
	ctx := context.Background()
	regs := make([]uint16, 40)
	coils := make([]bool, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if err := bus.ReadInputRegisters(ctx, 7, 0, regs); err != nil {
			t.Fatal(err)
		}
		if err := bus.ReadCoils(ctx, 7, 0, coils); err != nil {
			t.Fatal(err)
		}
		if err := bus.WriteSingleCoil(ctx, 7, 3, true); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a poll allocates %.1f times, want 0", allocs)
	}
	if regs[39] != 39 || !sl.coils[3] {
		t.Fatalf("transaction results wrong: regs[39]=%d coil3=%v", regs[39], sl.coils[3])
	}
	var ex *Exception
	if err := bus.ReadInputRegisters(ctx, 7, 60, regs); !errors.As(err, &ex) || ex.Code != IllegalDataAddress {
		t.Fatalf("out-of-range read: err = %v, want illegal data address exception", err)
	}
}
