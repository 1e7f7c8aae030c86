package diskdump

import "encoding/binary"

// LZO1X encoder. It produces a valid LZO1X stream (as decoded by
// lzo1x_decompress_safe and lzo1xDecompress) with a greedy hash matcher in
// the spirit of LZO1X-1; its output is not byte-identical to liblzo2's.
// Only M2 (3-8 bytes, distance <= 2 KiB) and M3 (distance <= 16 KiB)
// matches are emitted.

const (
	lzoHashBits = 13
	lzoMinMatch = 4
	lzoMaxM2    = 2048
	lzoMaxM3    = 16384
)

// lzoEncoder holds the hash table; not safe for concurrent use.
type lzoEncoder struct {
	table [1 << lzoHashBits]int32
}

func lzoHash(v uint32) uint32 { return (v * 0x1e35a7bd) >> (32 - lzoHashBits) }

// appendExt appends an extended length v >= 1: (v-1)/255 zero bytes, then
// the remainder (1..255).
func appendExt(out []byte, v int) []byte {
	for ; v > 255; v -= 255 {
		out = append(out, 0)
	}
	return append(out, byte(v))
}

// encode compresses src, appending to out[:0]. It returns nil if the
// result would not be smaller than limit bytes.
func (e *lzoEncoder) encode(out, src []byte, limit int) []byte {
	for i := range e.table {
		e.table[i] = -1
	}
	out = out[:0]
	sPos := -1 // index of the byte holding the S bits of the last match
	lit := 0   // start of pending literals
	// flushLit emits src[lit:end] as literals.
	flushLit := func(end int) {
		n := end - lit
		switch {
		case n == 0:
			return
		case n <= 3 && sPos >= 0:
			out[sPos] |= byte(n)
		case len(out) == 0 && n <= 238:
			out = append(out, byte(17+n))
		case n <= 18:
			out = append(out, byte(n-3))
		default:
			out = append(out, 0)
			out = appendExt(out, n-18)
		}
		out = append(out, src[lit:end]...)
	}
	le := binary.LittleEndian
	i := 0
	for i+lzoMinMatch <= len(src) {
		if len(out) >= limit {
			return nil
		}
		v := le.Uint32(src[i:])
		h := lzoHash(v)
		cand := int(e.table[h])
		e.table[h] = int32(i)
		if cand < 0 || i-cand > lzoMaxM3 || le.Uint32(src[cand:]) != v {
			// Skip faster through incompressible data.
			i += 1 + (i-lit)>>5
			continue
		}
		m := lzoMinMatch
		for i+m < len(src) && src[cand+m] == src[i+m] {
			m++
		}
		flushLit(i)
		d := i - cand
		if d <= lzoMaxM2 && m <= 8 {
			dd := d - 1
			if m <= 4 {
				out = append(out, byte(0x40|(m-3)<<5|(dd&7)<<2), byte(dd>>3))
			} else {
				out = append(out, byte(0x80|(m-5)<<5|(dd&7)<<2), byte(dd>>3))
			}
			sPos = len(out) - 2
		} else {
			if m-2 <= 31 {
				out = append(out, byte(0x20|(m-2)))
			} else {
				out = append(out, 0x20)
				out = appendExt(out, m-2-31)
			}
			out = append(out, byte((d-1)<<2), byte((d-1)>>6))
			sPos = len(out) - 2
		}
		i += m
		lit = i
	}
	flushLit(len(src))
	out = append(out, 0x11, 0, 0) // end of stream: M4 with distance 16384
	if len(out) >= limit {
		return nil
	}
	return out
}
