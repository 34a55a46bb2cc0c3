package modbus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"
)

// Slave is one device behind a Server. A method returns an *Exception to
// answer with it; any other error makes the device stay silent, as a real
// device that failed would.
type Slave interface {
	ReadBits(fc FunctionCode, addr uint16, dst []bool) error        // 01, 02
	ReadRegisters(fc FunctionCode, addr uint16, dst []uint16) error // 03, 04
	WriteBits(addr uint16, src []bool) error                        // 05, 15
	WriteRegisters(addr uint16, src []uint16) error                 // 06, 16
}

// Server answers Modbus RTU requests for a set of slaves on one line: the
// slave side, used by simulators. It resynchronises after junk and drops
// requests with a bad CRC, as devices do.
type Server struct {
	Slaves map[byte]Slave
	Logger *slog.Logger
	// Idle is the silence after which a partial frame is dropped; 0 means 20 ms.
	Idle time.Duration

	// Counters, read after Serve returns or with care: Serve is their only writer.
	Requests, CRCErrors, JunkBytes int

	bits [MaxReadBits]bool
	regs [MaxReadRegisters]uint16
	resp [maxADU]byte
}

// Serve answers requests read from port until ctx ends or the port fails.
func (s *Server) Serve(ctx context.Context, port io.ReadWriter) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idle := s.Idle
	if idle <= 0 {
		idle = 20 * time.Millisecond
	}
	rd := newTimedReader(port)
	accept := func(id byte) bool { _, ok := s.Slaves[id]; return ok || id == 0 }
	var buf [2 * maxADU]byte
	have := 0
	for ctx.Err() == nil {
		if have == len(buf) {
			s.JunkBytes += have
			have = 0
		}
		n, err := rd.read(buf[have:], idle)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if n == 0 { // inter-frame silence: whatever is pending is not a frame
			s.JunkBytes += have
			have = 0
			continue
		}
		have += n
		for have > 0 {
			start, end, discard, crcErrs, found := scanRequest(buf[:have], accept)
			s.CRCErrors += crcErrs
			if !found {
				s.JunkBytes += discard
				copy(buf[:], buf[discard:have])
				have -= discard
				break
			}
			s.JunkBytes += start
			s.Requests++
			if out := s.handle(buf[start:end]); out != nil {
				if err := writeAll(port, out); err != nil {
					return err
				}
			}
			copy(buf[:], buf[end:have])
			have -= end
		}
	}
	return ctx.Err()
}

// handle returns the response frame to req (CRC checked), or nil for none.
func (s *Server) handle(req []byte) []byte {
	id, fc := req[0], FunctionCode(req[1])
	sl := s.Slaves[id]
	if sl == nil && id != 0 {
		return nil
	}
	addr, qty := be16(req[2:]), be16(req[4:])
	out := append(s.resp[:0], id, byte(fc))
	var err error
	switch fc {
	case ReadCoils, ReadDiscreteInputs:
		if id == 0 {
			return nil
		}
		if qty == 0 || qty > MaxReadBits {
			err = &Exception{fc, IllegalDataValue}
			break
		}
		dst := s.bits[:qty]
		if err = sl.ReadBits(fc, addr, dst); err == nil {
			out = append(out, byte((int(qty)+7)/8))
			out = packBits(out, dst)
		}
	case ReadHoldingRegisters, ReadInputRegisters:
		if id == 0 {
			return nil
		}
		if qty == 0 || qty > MaxReadRegisters {
			err = &Exception{fc, IllegalDataValue}
			break
		}
		dst := s.regs[:qty]
		if err = sl.ReadRegisters(fc, addr, dst); err == nil {
			out = append(out, byte(2*qty))
			for _, v := range dst {
				out = append(out, byte(v>>8), byte(v))
			}
		}
	case WriteSingleCoil:
		if qty != 0xFF00 && qty != 0 {
			err = &Exception{fc, IllegalDataValue}
			break
		}
		s.bits[0] = qty == 0xFF00
		err = s.each(id, func(sl Slave) error { return sl.WriteBits(addr, s.bits[:1]) })
		out = append(out, req[2:6]...)
	case WriteSingleRegister:
		s.regs[0] = qty
		err = s.each(id, func(sl Slave) error { return sl.WriteRegisters(addr, s.regs[:1]) })
		out = append(out, req[2:6]...)
	case WriteMultipleCoils:
		if qty == 0 || qty > MaxWriteBits || int(req[6]) != (int(qty)+7)/8 {
			err = &Exception{fc, IllegalDataValue}
			break
		}
		for i := range int(qty) {
			s.bits[i] = req[7+i/8]&(1<<(i%8)) != 0
		}
		err = s.each(id, func(sl Slave) error { return sl.WriteBits(addr, s.bits[:qty]) })
		out = append(out, req[2:6]...)
	case WriteMultipleRegisters:
		if qty == 0 || qty > MaxWriteRegisters || int(req[6]) != 2*int(qty) {
			err = &Exception{fc, IllegalDataValue}
			break
		}
		for i := range int(qty) {
			s.regs[i] = be16(req[7+2*i:])
		}
		err = s.each(id, func(sl Slave) error { return sl.WriteRegisters(addr, s.regs[:qty]) })
		out = append(out, req[2:6]...)
	default:
		err = &Exception{fc, IllegalFunction}
	}
	if id == 0 { // broadcasts are never answered
		return nil
	}
	if err != nil {
		ex := asException(err)
		if ex == nil {
			return nil
		}
		out = append(s.resp[:0], id, byte(fc)|0x80, byte(ex.Code))
	}
	return appendCRC(out)
}

// each applies a write to the addressed slave, or to all on a broadcast.
func (s *Server) each(id byte, f func(Slave) error) error {
	if id != 0 {
		return f(s.Slaves[id])
	}
	for _, sl := range s.Slaves {
		_ = f(sl)
	}
	return nil
}

// asException finds an *Exception in err's chain; a direct one is taken
// without errors.As, whose target escapes and would allocate on every answer.
func asException(err error) *Exception {
	if ex, ok := err.(*Exception); ok {
		return ex
	}
	var ex *Exception
	if errors.As(err, &ex) {
		return ex
	}
	return nil
}
