package modbus

import (
	"errors"
	"fmt"
)

// FunctionCode is a Modbus function code.
type FunctionCode byte

// The function codes this package speaks.
const (
	ReadCoils              FunctionCode = 0x01
	ReadDiscreteInputs     FunctionCode = 0x02
	ReadHoldingRegisters   FunctionCode = 0x03
	ReadInputRegisters     FunctionCode = 0x04
	WriteSingleCoil        FunctionCode = 0x05
	WriteSingleRegister    FunctionCode = 0x06
	WriteMultipleCoils     FunctionCode = 0x0F
	WriteMultipleRegisters FunctionCode = 0x10
)

func (f FunctionCode) String() string {
	switch f {
	case ReadCoils:
		return "read-coils"
	case ReadDiscreteInputs:
		return "read-discrete-inputs"
	case ReadHoldingRegisters:
		return "read-holding-registers"
	case ReadInputRegisters:
		return "read-input-registers"
	case WriteSingleCoil:
		return "write-single-coil"
	case WriteSingleRegister:
		return "write-single-register"
	case WriteMultipleCoils:
		return "write-multiple-coils"
	case WriteMultipleRegisters:
		return "write-multiple-registers"
	}
	return fmt.Sprintf("function-0x%02x", byte(f))
}

// Protocol limits (Modbus application protocol v1.1b3, section 6).
const (
	MaxReadBits       = 2000
	MaxReadRegisters  = 125
	MaxWriteBits      = 1968
	MaxWriteRegisters = 123
	maxADU            = 256
)

// ExceptionCode is the code a slave answers with when it refuses a request.
type ExceptionCode byte

// Standard exception codes.
const (
	IllegalFunction    ExceptionCode = 0x01
	IllegalDataAddress ExceptionCode = 0x02
	IllegalDataValue   ExceptionCode = 0x03
	SlaveDeviceFailure ExceptionCode = 0x04
	SlaveDeviceBusy    ExceptionCode = 0x06
)

func (c ExceptionCode) String() string {
	switch c {
	case IllegalFunction:
		return "illegal function"
	case IllegalDataAddress:
		return "illegal data address"
	case IllegalDataValue:
		return "illegal data value"
	case SlaveDeviceFailure:
		return "slave device failure"
	case SlaveDeviceBusy:
		return "slave device busy"
	}
	return fmt.Sprintf("exception 0x%02x", byte(c))
}

// Exception is a slave's exception response; it is an answer, so the Bus does
// not retry it. Servers return one from a Slave method to answer with it.
type Exception struct {
	Function FunctionCode
	Code     ExceptionCode
}

func (e *Exception) Error() string {
	return fmt.Sprintf("modbus: %s: exception: %s", e.Function, e.Code)
}

// Is makes errors.Is(err, ErrException) true for every *Exception.
func (e *Exception) Is(target error) bool { return target == ErrException }

// Sentinel errors callers act on.
var (
	ErrException = errors.New("modbus: exception response")
	ErrTimeout   = errors.New("modbus: no response before timeout")
	ErrCRC       = errors.New("modbus: crc mismatch")
	ErrFrame     = errors.New("modbus: malformed or mismatched response")
	ErrArgument  = errors.New("modbus: invalid request argument")
	ErrClosed    = errors.New("modbus: bus closed")
)

// responseLen is the length of a normal response ADU to a request with this
// function code and quantity.
func responseLen(fc FunctionCode, qty uint16) int {
	switch fc {
	case ReadCoils, ReadDiscreteInputs:
		return 3 + (int(qty)+7)/8 + 2
	case ReadHoldingRegisters, ReadInputRegisters:
		return 3 + 2*int(qty) + 2
	default:
		return 8
	}
}

// exceptionLen is the length of an exception response ADU.
const exceptionLen = 5

// requestLen returns the length of the request ADU starting at b, 0 when b is
// too short to tell yet, or -1 when b[1] is not a function code we serve.
func requestLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch FunctionCode(b[1]) {
	case ReadCoils, ReadDiscreteInputs, ReadHoldingRegisters, ReadInputRegisters,
		WriteSingleCoil, WriteSingleRegister:
		return 8
	case WriteMultipleCoils, WriteMultipleRegisters:
		if len(b) < 7 {
			return 0
		}
		return 9 + int(b[6])
	}
	return -1
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

func putBE16(b []byte, v uint16) { b[0], b[1] = byte(v>>8), byte(v) }
