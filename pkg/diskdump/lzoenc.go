package diskdump

import (
	"encoding/binary"
	"math/bits"
)

// LZO1X encoder. It produces a valid LZO1X stream (as decoded by
// lzo1x_decompress_safe and lzo1xDecompress) with a greedy hash matcher in
// the spirit of LZO1X-1 (the compressor of makedumpfile -l); its output is
// not byte-identical to liblzo2's. Only M2 (3-8 bytes, distance <= 2 KiB)
// and M3 (distance <= 16 KiB) matches are emitted.
//
// What makes it fast on pages: the hash table is never cleared (entries
// carry a base that grows with every call, so those of earlier pages read
// as empty); matches are extended 8 bytes at a time; the output is written
// by index into a buffer sized for the worst case, and the search stops as
// soon as the output reaches the caller's limit (a page stored raw).

const (
	lzoHashBits = 13
	lzoMinMatch = 4
	lzoMaxM2    = 2048
	lzoMaxM3    = 16384
	// lzoTail is how far from the end matches are sought, so that the
	// 8-byte loads of the match loop stay inside src (liblzo2 stops 20
	// bytes before the end for the same reason).
	lzoTail = 12
	// lzoMaxBase bounds the table base before the table is cleared.
	lzoMaxBase = 1 << 30
)

// lzoEncoder holds the hash table; not safe for concurrent use.
type lzoEncoder struct {
	table [1 << lzoHashBits]int32
	// base is added to positions stored in table; entries below it are
	// from earlier calls.
	base int
}

// lzoMaxOut is the largest output for n input bytes: every byte a
// literal, with a run length of at most n/255+2 bytes, and the end marker.
func lzoMaxOut(n int) int { return n + n/255 + 16 }

// encode compresses src into out (which it grows when shorter than
// lzoMaxOut(len(src))) and returns the stream, or nil if it would not be
// smaller than limit bytes (or be within a few bytes of it: the search
// stops early for pages that will be stored raw).
func (e *lzoEncoder) encode(out, src []byte, limit int) []byte {
	n := len(src)
	if cap(out) < lzoMaxOut(n) {
		out = make([]byte, lzoMaxOut(n))
	}
	out = out[:cap(out)]
	if e.base+n+1 >= lzoMaxBase {
		clear(e.table[:])
		e.base = 0
	}
	base := e.base + 1 // entries of this call are >= base
	e.base = base + n

	o := 0     // output position
	sPos := -1 // index of the byte holding the S bits of the last match
	lit := 0   // start of pending literals
	le := binary.LittleEndian
	i := 0
	end := n - lzoTail
	for i < end {
		v := le.Uint32(src[i:])
		h := (v * 0x1824429d) >> (32 - lzoHashBits)
		cand := int(e.table[h]) - base
		e.table[h] = int32(i + base)
		if cand < 0 || i-cand > lzoMaxM3 || le.Uint32(src[cand:]) != v {
			// Skip faster through incompressible data.
			i += 1 + (i-lit)>>5
			continue
		}
		// Extend the match 8 bytes at a time.
		m := lzoMinMatch
		for i+m+8 <= n {
			if x := le.Uint64(src[i+m:]) ^ le.Uint64(src[cand+m:]); x != 0 {
				m += bits.TrailingZeros64(x) >> 3
				goto matched
			}
			m += 8
		}
		for i+m < n && src[cand+m] == src[i+m] {
			m++
		}
	matched:
		// Literals since the last match, then the match; the worst case
		// of both is bounded by what they replace, so one check of the
		// limit per match is enough.
		if o+(i-lit)+(i-lit)/255+8 >= limit {
			return nil
		}
		o = lzoLiterals(out, o, src[lit:i], sPos)
		d := i - cand - 1
		switch {
		case d < lzoMaxM2 && m <= 8:
			out[o] = byte((m-1)<<5 | (d&7)<<2)
			out[o+1] = byte(d >> 3)
			sPos = o
			o += 2
		case m-2 <= 31:
			out[o] = byte(0x20 | (m - 2))
			out[o+1] = byte(d << 2)
			out[o+2] = byte(d >> 6)
			sPos = o + 1
			o += 3
		default:
			out[o] = 0x20
			o = lzoExt(out, o+1, m-2-31)
			out[o] = byte(d << 2)
			out[o+1] = byte(d >> 6)
			sPos = o
			o += 2
		}
		i += m
		lit = i
	}
	if o+(n-lit)+(n-lit)/255+8 >= limit {
		return nil
	}
	o = lzoLiterals(out, o, src[lit:], sPos)
	// End of stream: an M4 match with distance 16384.
	out[o], out[o+1], out[o+2] = 0x11, 0, 0
	return out[:o+3]
}

// lzoLiterals writes the literal run l at out[o:] and returns the new
// position. A run of 1-3 bytes after a match goes into the match's S bits
// (out[sPos]); the first run of the stream has its own short form.
func lzoLiterals(out []byte, o int, l []byte, sPos int) int {
	n := len(l)
	switch {
	case n == 0:
		return o
	case n <= 3 && sPos >= 0:
		out[sPos] |= byte(n)
	case o == 0 && n <= 238:
		out[o] = byte(17 + n)
		o++
	case n <= 18:
		out[o] = byte(n - 3)
		o++
	default:
		out[o] = 0
		o = lzoExt(out, o+1, n-18)
	}
	return o + copy(out[o:], l)
}

// lzoExt writes an extended length v >= 1: (v-1)/255 zero bytes, then the
// remainder (1..255).
func lzoExt(out []byte, o, v int) int {
	for ; v > 255; v -= 255 {
		out[o] = 0
		o++
	}
	out[o] = byte(v)
	return o + 1
}
