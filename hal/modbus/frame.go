package modbus

// scanResponse looks in b for the response to a request to slave with
// function fc whose normal response is want bytes long (exception responses
// are 5). See scan for the results.
func scanResponse(b []byte, slave byte, fc FunctionCode, want int) (start, end, discard, crcErrs int, found bool) {
	return scan(b, func(c []byte) int {
		switch {
		case c[0] != slave:
			return -1
		case len(c) < 2:
			return 0
		case c[1] == byte(fc):
			return want
		case c[1] == byte(fc)|0x80:
			return exceptionLen
		}
		return -1
	})
}

// scanRequest looks in b for a request to a slave that accept reports as
// served (the broadcast address 0 included if accept says so).
func scanRequest(b []byte, accept func(byte) bool) (start, end, discard, crcErrs int, found bool) {
	return scan(b, func(c []byte) int {
		if !accept(c[0]) {
			return -1
		}
		return requestLen(c)
	})
}

// scan finds the first frame with a good CRC in b. frameLen tells, for the
// bytes from a candidate start, the frame's length: -1 when no frame starts
// there, 0 when more bytes are needed to tell. It returns the frame bounds
// when found; otherwise how many leading bytes can never begin a frame (junk,
// or candidates whose CRC failed — counted in crcErrs) and may be dropped
// before reading more.
//
// Candidates are tried in order, and a later complete candidate is accepted
// even while an earlier one still waits for bytes, so a junk byte that looks
// like a frame header cannot hide the real frame behind it.
func scan(b []byte, frameLen func([]byte) int) (start, end, discard, crcErrs int, found bool) {
	discard = len(b)
	pending := false
	for i := range b {
		n := frameLen(b[i:])
		switch {
		case n < 0:
			continue
		case n == 0 || i+n > len(b):
			if !pending {
				discard, pending = i, true
			}
			continue
		}
		if crcOK(b[i : i+n]) {
			return i, i + n, 0, crcErrs, true
		}
		if !pending {
			crcErrs++
		}
	}
	return 0, 0, discard, crcErrs, false
}

// packBits appends bits packed LSB first, as coils travel on the wire.
func packBits(dst []byte, bits []bool) []byte {
	for i := 0; i < len(bits); i += 8 {
		var v byte
		for j := 0; j < 8 && i+j < len(bits); j++ {
			if bits[i+j] {
				v |= 1 << j
			}
		}
		dst = append(dst, v)
	}
	return dst
}
