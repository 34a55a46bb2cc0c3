package modbussim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"linkguard.dev/linkguard/hal/modbus"
	"periph.io/x/conn/v3/physic"
)

// Circuit is one switched load on the simulated feed.
type Circuit struct {
	ID    string
	Coil  int          // coil on the relay board; -1 when switched elsewhere (see SetExternal)
	Phase int          // 0, 1 or 2
	Load  physic.Power // mean draw while on
	Noise physic.Power // uniform noise amplitude (±) on each reading
	On    bool         // initial state for a circuit without a coil
}

// Config describes the simulated devices.
type Config struct {
	MeterSlave byte // 0: no meter on the line
	BoardSlave byte // 0: no relay board
	Coils      int  // coils on the board; 0 means 8
	// CoilsOn is the state of the coils at power-on.
	CoilsOn   bool
	Circuits  []Circuit
	BaseLoad  physic.Power             // unswitched load, spread over the phases
	Voltage   physic.ElectricPotential // 0 means 230 V
	Frequency physic.Frequency         // 0 means 50 Hz
	Seed      uint64
	Logger    *slog.Logger

	// Fault injection, as probabilities per response.
	Junk       float64 // junk bytes before the response
	CorruptCRC float64 // one bit of the response flipped
	Drop       float64 // no response at all
}

// Sim is a running set of simulated devices. Its methods are safe for
// concurrent use with Serve.
type Sim struct {
	cfg Config

	mu        sync.Mutex
	rng       *rand.Rand
	coils     []bool
	coilOps   []int
	external  map[string]bool
	meterDown bool
	energy    float64 // imported kWh
	lastE     time.Time
	now       func() time.Time
	injected  int
}

// New returns simulated devices as cfg describes.
func New(cfg Config) *Sim {
	if cfg.Coils <= 0 {
		cfg.Coils = 8
	}
	if cfg.Voltage == 0 {
		cfg.Voltage = 230 * physic.Volt
	}
	if cfg.Frequency == 0 {
		cfg.Frequency = 50 * physic.Hertz
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		coils: make([]bool, cfg.Coils), coilOps: make([]int, cfg.Coils),
		external: map[string]bool{}, now: time.Now}
	for i := range s.coils {
		s.coils[i] = cfg.CoilsOn
	}
	for _, c := range cfg.Circuits {
		if c.Coil < 0 {
			s.external[c.ID] = c.On
		}
	}
	s.lastE = s.now()
	return s
}

// Serve answers requests on port (usually PTY.Master) until ctx ends.
func (s *Sim) Serve(ctx context.Context, port io.ReadWriter) error {
	srv := &modbus.Server{Slaves: map[byte]modbus.Slave{}, Logger: s.cfg.Logger}
	if s.cfg.MeterSlave != 0 {
		srv.Slaves[s.cfg.MeterSlave] = (*meterSlave)(s)
	}
	if s.cfg.BoardSlave != 0 {
		srv.Slaves[s.cfg.BoardSlave] = (*boardSlave)(s)
	}
	err := srv.Serve(ctx, &faultyPort{rw: port, s: s})
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// Start opens a pty, serves it until ctx ends, and returns the tty path the
// code under test opens. The pty is closed when ctx ends.
func (s *Sim) Start(ctx context.Context) (string, error) {
	p, err := OpenPTY()
	if err != nil {
		return "", err
	}
	go func() {
		defer p.Close()
		if err := s.Serve(ctx, p.Master); err != nil {
			s.cfg.Logger.Warn("modbussim: serve ended", "err", err)
		}
	}()
	return p.Path, nil
}

// SetExternal switches a circuit that has no coil (a GPIO relay in tests).
func (s *Sim) SetExternal(id string, on bool) {
	s.mu.Lock()
	s.external[id] = on
	s.mu.Unlock()
}

// SetMeterDown makes the meter vanish from the line (or come back).
func (s *Sim) SetMeterDown(down bool) {
	s.mu.Lock()
	s.meterDown = down
	s.mu.Unlock()
}

// SetFaults changes the fault-injection probabilities.
func (s *Sim) SetFaults(junk, corruptCRC, drop float64) {
	s.mu.Lock()
	s.cfg.Junk, s.cfg.CorruptCRC, s.cfg.Drop = junk, corruptCRC, drop
	s.mu.Unlock()
}

// Coil returns the state of a coil on the board.
func (s *Sim) Coil(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.coils[i]
}

// SetCoil changes a coil behind the controller's back (a relay that drifted
// or was switched by hand), without counting it as a commanded operation.
func (s *Sim) SetCoil(i int, on bool) {
	s.mu.Lock()
	s.coils[i] = on
	s.mu.Unlock()
}

// CoilOps returns how many times a write changed coil i.
func (s *Sim) CoilOps(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.coilOps[i]
}

// Injected returns how many faults were injected so far.
func (s *Sim) Injected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.injected
}

// Power returns the mean total draw of the circuits that are on now, without
// noise: what a test expects the meter to read.
func (s *Sim) Power() physic.Power {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p [3]physic.Power
	s.phasePower(&p, false)
	return p[0] + p[1] + p[2]
}

func (s *Sim) circuitOn(c Circuit) bool {
	if c.Coil < 0 {
		return s.external[c.ID]
	}
	return c.Coil < len(s.coils) && s.coils[c.Coil]
}

// phasePower fills p with the draw per phase; s.mu is held.
func (s *Sim) phasePower(p *[3]physic.Power, noisy bool) {
	for i := range p {
		p[i] = s.cfg.BaseLoad / 3
	}
	for _, c := range s.cfg.Circuits {
		if !s.circuitOn(c) {
			continue
		}
		v := c.Load
		if noisy && c.Noise > 0 {
			v += physic.Power((s.rng.Float64()*2 - 1) * float64(c.Noise))
		}
		p[c.Phase%3] += v
	}
}

// SDM630 input registers (function 04), float32 across two big-endian registers.
const (
	regVoltage1  = 0x0000
	regCurrent1  = 0x0006
	regPower1    = 0x000C
	regTotalP    = 0x0034
	regFrequency = 0x0046
	regImportkWh = 0x0048
	meterRegs    = 0x0050
)

type meterSlave Sim

func (m *meterSlave) ReadBits(modbus.FunctionCode, uint16, []bool) error {
	return &modbus.Exception{Function: modbus.ReadCoils, Code: modbus.IllegalFunction}
}

func (m *meterSlave) WriteBits(uint16, []bool) error {
	return &modbus.Exception{Function: modbus.WriteSingleCoil, Code: modbus.IllegalFunction}
}

func (m *meterSlave) WriteRegisters(uint16, []uint16) error {
	return &modbus.Exception{Function: modbus.WriteSingleRegister, Code: modbus.IllegalFunction}
}

var errSilent = errors.New("modbussim: device silent")

// ReadRegisters behaves like an Eastron meter: input registers only, even
// start and count, at most 80 registers per request.
func (m *meterSlave) ReadRegisters(fc modbus.FunctionCode, addr uint16, dst []uint16) error {
	s := (*Sim)(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.meterDown {
		return errSilent
	}
	if fc != modbus.ReadInputRegisters {
		return &modbus.Exception{Function: fc, Code: modbus.IllegalFunction}
	}
	if addr%2 != 0 || len(dst)%2 != 0 || int(addr)+len(dst) > meterRegs {
		return &modbus.Exception{Function: fc, Code: modbus.IllegalDataAddress}
	}
	if len(dst) > 80 {
		return &modbus.Exception{Function: fc, Code: modbus.IllegalDataValue}
	}
	var regs [meterRegs]uint16
	var p [3]physic.Power
	s.phasePower(&p, true)
	now := s.now()
	total := p[0] + p[1] + p[2]
	s.energy += float64(total) / float64(physic.KiloWatt) * now.Sub(s.lastE).Hours()
	s.lastE = now
	volts := float64(s.cfg.Voltage) / float64(physic.Volt)
	for i := range 3 {
		v := volts + (s.rng.Float64()*2-1)*0.5
		w := float64(p[i]) / float64(physic.Watt)
		putF32(regs[regVoltage1+2*i:], v)
		putF32(regs[regCurrent1+2*i:], w/v)
		putF32(regs[regPower1+2*i:], w)
	}
	putF32(regs[regTotalP:], float64(total)/float64(physic.Watt))
	putF32(regs[regFrequency:], float64(s.cfg.Frequency)/float64(physic.Hertz))
	putF32(regs[regImportkWh:], s.energy)
	copy(dst, regs[addr:])
	return nil
}

func putF32(r []uint16, v float64) {
	b := math.Float32bits(float32(v))
	r[0], r[1] = uint16(b>>16), uint16(b)
}

type boardSlave Sim

func (b *boardSlave) ReadBits(fc modbus.FunctionCode, addr uint16, dst []bool) error {
	s := (*Sim)(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if fc != modbus.ReadCoils {
		return &modbus.Exception{Function: fc, Code: modbus.IllegalFunction}
	}
	if int(addr)+len(dst) > len(s.coils) {
		return &modbus.Exception{Function: fc, Code: modbus.IllegalDataAddress}
	}
	copy(dst, s.coils[addr:])
	return nil
}

func (b *boardSlave) WriteBits(addr uint16, src []bool) error {
	s := (*Sim)(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(addr)+len(src) > len(s.coils) {
		return &modbus.Exception{Function: modbus.WriteMultipleCoils, Code: modbus.IllegalDataAddress}
	}
	for i, v := range src {
		if s.coils[int(addr)+i] != v {
			s.coilOps[int(addr)+i]++
			s.coils[int(addr)+i] = v
		}
	}
	return nil
}

func (b *boardSlave) ReadRegisters(fc modbus.FunctionCode, _ uint16, _ []uint16) error {
	return &modbus.Exception{Function: fc, Code: modbus.IllegalFunction}
}

func (b *boardSlave) WriteRegisters(uint16, []uint16) error {
	return &modbus.Exception{Function: modbus.WriteSingleRegister, Code: modbus.IllegalFunction}
}

// faultyPort injects line faults into the responses the server writes.
type faultyPort struct {
	rw  io.ReadWriter
	s   *Sim
	buf []byte
}

func (f *faultyPort) Read(p []byte) (int, error) { return f.rw.Read(p) }

// SetReadTimeout passes the timeout ability of the underlying port through,
// whichever way it has it (a pty master file or a go.bug.st/serial port).
func (f *faultyPort) SetReadTimeout(d time.Duration) error {
	switch p := f.rw.(type) {
	case interface{ SetReadTimeout(time.Duration) error }:
		return p.SetReadTimeout(d)
	case interface{ SetReadDeadline(time.Time) error }:
		return p.SetReadDeadline(time.Now().Add(d))
	}
	return nil
}

func (f *faultyPort) Write(p []byte) (int, error) {
	s := f.s
	s.mu.Lock()
	drop := s.rng.Float64() < s.cfg.Drop
	junk := 0
	if s.rng.Float64() < s.cfg.Junk {
		junk = 1 + s.rng.IntN(8)
	}
	flip := -1
	if s.rng.Float64() < s.cfg.CorruptCRC {
		flip = s.rng.IntN(len(p) * 8)
	}
	f.buf = f.buf[:0]
	for range junk {
		f.buf = append(f.buf, byte(s.rng.Uint32()))
	}
	if drop || junk > 0 || flip >= 0 {
		s.injected++
	}
	s.mu.Unlock()
	if drop {
		return len(p), nil
	}
	f.buf = append(f.buf, p...)
	if flip >= 0 {
		f.buf[junk+flip/8] ^= 1 << (flip % 8)
	}
	if _, err := f.rw.Write(f.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
