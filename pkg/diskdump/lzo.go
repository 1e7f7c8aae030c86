package diskdump

import "errors"

var errLZO = errors.New("invalid LZO1X stream")

// lzo1xDecompress decodes an LZO1X stream (the bitstream described in the
// Linux kernel's Documentation/staging/lzo.rst) into dst and returns the
// number of bytes produced. It never reads or writes out of bounds.
func lzo1xDecompress(dst, src []byte) (int, error) {
	ip, op, state := 0, 0, 0
	lit := func(n int) bool {
		if n > len(src)-ip || n > len(dst)-op {
			return false
		}
		copy(dst[op:], src[ip:ip+n])
		ip += n
		op += n
		return true
	}
	// ext decodes an extended length: zero bytes add 255 each, the final
	// non-zero byte is added.
	ext := func() (int, bool) {
		n := 0
		for ip < len(src) && src[ip] == 0 {
			n += 255
			ip++
			if n > len(dst) {
				return 0, false
			}
		}
		if ip >= len(src) {
			return 0, false
		}
		n += int(src[ip])
		ip++
		return n, true
	}
	if len(src) > 0 && src[0] > 17 {
		t := int(src[0]) - 17
		ip = 1
		if !lit(t) {
			return op, errLZO
		}
		state = min(t, 4)
	}
	for {
		if ip >= len(src) {
			return op, errLZO
		}
		inst := int(src[ip])
		ip++
		var length, dist, s int
		switch {
		case inst >= 64:
			if ip >= len(src) {
				return op, errLZO
			}
			h := int(src[ip])
			ip++
			if inst >= 128 {
				length = 5 + (inst>>5)&3
			} else {
				length = 3 + (inst>>5)&1
			}
			dist = h<<3 + (inst>>2)&7 + 1
			s = inst & 3
		case inst >= 16:
			var l int
			if inst >= 32 {
				l = inst & 31
				if l == 0 {
					n, ok := ext()
					if !ok {
						return op, errLZO
					}
					l = 31 + n
				}
			} else {
				l = inst & 7
				if l == 0 {
					n, ok := ext()
					if !ok {
						return op, errLZO
					}
					l = 7 + n
				}
			}
			if ip+2 > len(src) {
				return op, errLZO
			}
			v := int(src[ip]) | int(src[ip+1])<<8
			ip += 2
			length = 2 + l
			s = v & 3
			if inst >= 32 {
				dist = v>>2 + 1
			} else {
				dist = 16384 + (inst>>3)&1<<14 + v>>2
				if dist == 16384 {
					return op, nil // end of stream
				}
			}
		default: // 0..15
			if state == 0 {
				l := inst
				if l == 0 {
					n, ok := ext()
					if !ok {
						return op, errLZO
					}
					l = 15 + n
				}
				if !lit(3 + l) {
					return op, errLZO
				}
				state = 4
				continue
			}
			if ip >= len(src) {
				return op, errLZO
			}
			h := int(src[ip])
			ip++
			s = inst & 3
			if state == 4 {
				length, dist = 3, h<<2+(inst>>2)&3+2049
			} else {
				length, dist = 2, h<<2+(inst>>2)&3+1
			}
		}
		if dist > op || length > len(dst)-op {
			return op, errLZO
		}
		for i := 0; i < length; i++ { // byte by byte: may overlap
			dst[op+i] = dst[op-dist+i]
		}
		op += length
		if !lit(s) {
			return op, errLZO
		}
		state = s
	}
}
