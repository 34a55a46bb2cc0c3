package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Config holds the timing of one bus. Zero values take the defaults noted.
type Config struct {
	Baud     int           // line speed, for the inter-frame silence; 0 means 9600
	CharBits int           // start+data+parity+stop bits; 0 means 11 (the safe upper bound)
	Timeout  time.Duration // wait for a response per attempt; 0 means 500 ms
	Retries  int           // further attempts after a timeout, CRC or framing error
	Backoff  time.Duration // pause before the first retry, doubled each retry; 0 means Timeout/10
}

func (c Config) withDefaults() Config {
	if c.Baud <= 0 {
		c.Baud = 9600
	}
	if c.CharBits <= 0 {
		c.CharBits = 11
	}
	if c.Timeout <= 0 {
		c.Timeout = 500 * time.Millisecond
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.Backoff <= 0 {
		c.Backoff = c.Timeout / 10
	}
	return c
}

// Stats counts what happened on a bus since it was made.
type Stats struct {
	Requests    uint64 // transactions started (one per call, not per attempt)
	Retries     uint64 // extra attempts
	Timeouts    uint64 // attempts that got no intact response in time
	CRCErrors   uint64 // candidate frames dropped for a bad CRC
	FrameErrors uint64 // intact frames whose content did not match the request
	Exceptions  uint64 // exception responses
	JunkBytes   uint64 // bytes skipped while resynchronising
	Failures    uint64 // calls that returned an error
}

type counters struct {
	requests, retries, timeouts, crc, frame, exceptions, junk, failures atomic.Uint64
}

// Bus is the master side of one RS-485 line. It serialises transactions, so
// any number of goroutines may share it to reach several slaves: frames are
// never interleaved. It allocates nothing per successful transaction.
type Bus struct {
	mu      sync.Mutex
	port    io.ReadWriter
	rd      timedReader
	reset   inputResetter
	cfg     Config
	silence time.Duration
	lastIO  time.Time
	closed  bool
	log     *slog.Logger
	c       counters

	tx [maxADU]byte
	rx [2 * maxADU]byte
}

// NewBus returns a Bus speaking over port (a go.bug.st/serial port on
// hardware). The caller keeps ownership of port and closes it after Close.
func NewBus(port io.ReadWriter, cfg Config, logger *slog.Logger) *Bus {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	b := &Bus{port: port, rd: newTimedReader(port), cfg: cfg, log: logger,
		silence: Silence(cfg.Baud, cfg.CharBits)}
	b.reset, _ = port.(inputResetter)
	return b
}

// Close makes later calls fail with ErrClosed; it waits for a running transaction.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// Stats returns the bus counters.
func (b *Bus) Stats() Stats {
	return Stats{
		Requests: b.c.requests.Load(), Retries: b.c.retries.Load(), Timeouts: b.c.timeouts.Load(),
		CRCErrors: b.c.crc.Load(), FrameErrors: b.c.frame.Load(), Exceptions: b.c.exceptions.Load(),
		JunkBytes: b.c.junk.Load(), Failures: b.c.failures.Load(),
	}
}

// Config returns the effective configuration (defaults applied).
func (b *Bus) Config() Config { return b.cfg }

// ReadCoils reads len(dst) coils from addr (function 01).
func (b *Bus) ReadCoils(ctx context.Context, slave byte, addr uint16, dst []bool) error {
	return b.readBits(ctx, slave, ReadCoils, addr, dst)
}

// ReadDiscreteInputs reads len(dst) discrete inputs from addr (function 02).
func (b *Bus) ReadDiscreteInputs(ctx context.Context, slave byte, addr uint16, dst []bool) error {
	return b.readBits(ctx, slave, ReadDiscreteInputs, addr, dst)
}

// ReadHoldingRegisters reads len(dst) holding registers from addr (function 03).
func (b *Bus) ReadHoldingRegisters(ctx context.Context, slave byte, addr uint16, dst []uint16) error {
	return b.readRegs(ctx, slave, ReadHoldingRegisters, addr, dst)
}

// ReadInputRegisters reads len(dst) input registers from addr (function 04).
func (b *Bus) ReadInputRegisters(ctx context.Context, slave byte, addr uint16, dst []uint16) error {
	return b.readRegs(ctx, slave, ReadInputRegisters, addr, dst)
}

// WriteSingleCoil switches one coil (function 05).
func (b *Bus) WriteSingleCoil(ctx context.Context, slave byte, addr uint16, on bool) error {
	v := uint16(0x0000)
	if on {
		v = 0xFF00
	}
	return b.writeSingle(ctx, slave, WriteSingleCoil, addr, v)
}

// WriteSingleRegister writes one holding register (function 06).
func (b *Bus) WriteSingleRegister(ctx context.Context, slave byte, addr, v uint16) error {
	return b.writeSingle(ctx, slave, WriteSingleRegister, addr, v)
}

// WriteMultipleCoils writes len(vals) coils from addr (function 15).
func (b *Bus) WriteMultipleCoils(ctx context.Context, slave byte, addr uint16, vals []bool) error {
	fc := WriteMultipleCoils
	if len(vals) == 0 || len(vals) > MaxWriteBits {
		return b.argErr(slave, fc, len(vals))
	}
	qty := uint16(len(vals))
	return b.transact(ctx, slave, fc, 8, func(tx []byte) []byte {
		tx = header(tx, slave, fc, addr, qty)
		tx = append(tx, byte((len(vals)+7)/8))
		return packBits(tx, vals)
	}, func(resp []byte) bool {
		return be16(resp[2:]) == addr && be16(resp[4:]) == qty
	})
}

// WriteMultipleRegisters writes len(vals) holding registers from addr (function 16).
func (b *Bus) WriteMultipleRegisters(ctx context.Context, slave byte, addr uint16, vals []uint16) error {
	fc := WriteMultipleRegisters
	if len(vals) == 0 || len(vals) > MaxWriteRegisters {
		return b.argErr(slave, fc, len(vals))
	}
	qty := uint16(len(vals))
	return b.transact(ctx, slave, fc, 8, func(tx []byte) []byte {
		tx = header(tx, slave, fc, addr, qty)
		tx = append(tx, byte(2*len(vals)))
		for _, v := range vals {
			tx = append(tx, byte(v>>8), byte(v))
		}
		return tx
	}, func(resp []byte) bool {
		return be16(resp[2:]) == addr && be16(resp[4:]) == qty
	})
}

func (b *Bus) argErr(slave byte, fc FunctionCode, qty int) error {
	return fmt.Errorf("modbus: slave %d: %s: quantity %d: %w", slave, fc, qty, ErrArgument)
}

// header appends slave, function, a 16-bit address and a 16-bit value.
func header(tx []byte, slave byte, fc FunctionCode, addr, v uint16) []byte {
	return append(tx, slave, byte(fc), byte(addr>>8), byte(addr), byte(v>>8), byte(v))
}

func (b *Bus) readBits(ctx context.Context, slave byte, fc FunctionCode, addr uint16, dst []bool) error {
	if len(dst) == 0 || len(dst) > MaxReadBits || slave == 0 {
		return b.argErr(slave, fc, len(dst))
	}
	qty := uint16(len(dst))
	return b.transact(ctx, slave, fc, responseLen(fc, qty), func(tx []byte) []byte {
		return header(tx, slave, fc, addr, qty)
	}, func(resp []byte) bool {
		nb := (len(dst) + 7) / 8
		if int(resp[2]) != nb {
			return false
		}
		for i := range dst {
			dst[i] = resp[3+i/8]&(1<<(i%8)) != 0
		}
		return true
	})
}

func (b *Bus) readRegs(ctx context.Context, slave byte, fc FunctionCode, addr uint16, dst []uint16) error {
	if len(dst) == 0 || len(dst) > MaxReadRegisters || slave == 0 {
		return b.argErr(slave, fc, len(dst))
	}
	qty := uint16(len(dst))
	return b.transact(ctx, slave, fc, responseLen(fc, qty), func(tx []byte) []byte {
		return header(tx, slave, fc, addr, qty)
	}, func(resp []byte) bool {
		if int(resp[2]) != 2*len(dst) {
			return false
		}
		for i := range dst {
			dst[i] = be16(resp[3+2*i:])
		}
		return true
	})
}

func (b *Bus) writeSingle(ctx context.Context, slave byte, fc FunctionCode, addr, v uint16) error {
	return b.transact(ctx, slave, fc, 8, func(tx []byte) []byte {
		return header(tx, slave, fc, addr, v)
	}, func(resp []byte) bool {
		return be16(resp[2:]) == addr && be16(resp[4:]) == v
	})
}

// transact builds the request (without CRC) into the bus buffer, sends it and
// waits for the response, retrying timeouts, CRC and framing errors. accept
// checks and consumes a normal response. Slave 0 is a broadcast: sent, no
// response awaited.
func (b *Bus) transact(ctx context.Context, slave byte, fc FunctionCode, want int, build func([]byte) []byte, accept func([]byte) bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.c.requests.Add(1)
	frame := appendCRC(build(b.tx[:0]))
	backoff := b.cfg.Backoff
	var err error
	for attempt := 0; attempt <= b.cfg.Retries; attempt++ {
		if attempt > 0 {
			b.c.retries.Add(1)
			if werr := sleepCtx(ctx, backoff); werr != nil {
				err = werr
				break
			}
			backoff *= 2
		}
		if err = ctx.Err(); err != nil {
			break
		}
		err = b.attempt(ctx, slave, fc, frame, want, accept)
		if err == nil || errors.Is(err, ErrException) || ctx.Err() != nil {
			break
		}
		if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCRC) && !errors.Is(err, ErrFrame) {
			break // the port itself failed: retrying would not help
		}
	}
	if err != nil {
		b.c.failures.Add(1)
		return fmt.Errorf("modbus: slave %d: %s: %w", slave, fc, err)
	}
	return nil
}

func (b *Bus) attempt(ctx context.Context, slave byte, fc FunctionCode, frame []byte, want int, accept func([]byte) bool) error {
	if wait := b.silence - time.Since(b.lastIO); wait > 0 {
		time.Sleep(wait)
	}
	if b.reset != nil {
		_ = b.reset.ResetInputBuffer() // best effort: the scanner resynchronises anyway
	}
	if err := writeAll(b.port, frame); err != nil {
		return err
	}
	sent := time.Now()
	b.lastIO = sent
	if slave == 0 {
		return nil
	}
	deadline := sent.Add(b.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	have, crcSeen := 0, 0
	for {
		left := time.Until(deadline)
		if left <= 0 {
			b.c.timeouts.Add(1)
			if have > 0 {
				b.c.junk.Add(uint64(have))
			}
			if crcSeen > 0 {
				return ErrCRC
			}
			return ErrTimeout
		}
		if left > 100*time.Millisecond {
			left = 100 * time.Millisecond // wake up for ctx cancellation
		}
		if have == len(b.rx) { // full of undecidable bytes: drop the oldest half
			copy(b.rx[:], b.rx[have/2:have])
			b.c.junk.Add(uint64(have / 2))
			have -= have / 2
		}
		n, err := b.rd.read(b.rx[have:], left)
		if err != nil {
			return err
		}
		if n == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		have += n
		b.lastIO = time.Now()
		start, end, discard, crcErrs, found := scanResponse(b.rx[:have], slave, fc, want)
		if crcErrs > 0 {
			b.c.crc.Add(uint64(crcErrs))
			crcSeen += crcErrs
		}
		if !found {
			if discard > 0 {
				b.c.junk.Add(uint64(discard))
				copy(b.rx[:], b.rx[discard:have])
				have -= discard
			}
			continue
		}
		if start > 0 {
			b.c.junk.Add(uint64(start))
		}
		resp := b.rx[start:end]
		if resp[1]&0x80 != 0 {
			b.c.exceptions.Add(1)
			return &Exception{Function: fc, Code: ExceptionCode(resp[2])}
		}
		if !accept(resp) {
			b.c.frame.Add(1)
			return ErrFrame
		}
		return nil
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
