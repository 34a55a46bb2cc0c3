package modbus

// crcTable is the CRC-16/MODBUS table (reflected polynomial 0xA001).
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC returns the Modbus RTU CRC-16 of b; on the wire it is sent low byte first.
func CRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, v := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^v]
	}
	return crc
}

// appendCRC appends the CRC of b to b, low byte first.
func appendCRC(b []byte) []byte {
	c := CRC(b)
	return append(b, byte(c), byte(c>>8))
}

// crcOK reports whether frame (including its two trailing CRC bytes) is intact.
func crcOK(frame []byte) bool {
	if len(frame) < 4 {
		return false
	}
	n := len(frame) - 2
	c := CRC(frame[:n])
	return frame[n] == byte(c) && frame[n+1] == byte(c>>8)
}
