// Package scrub overwrites LUKS volume keys in a dump of kernel memory.
//
// The dead kernel's memory holds every open volume's key (dm-crypt's copy,
// keyring payloads), the keys a mode derives from it (XTS halves, ESSIV's
// salt) and the AES key schedules expanded from those. The crash kernel
// knows the keys, so it can find all of these in each page it writes and
// overwrite them with zeros: a Scrubber holds the byte strings (patterns)
// and their index, a Stream runs them over the pages of one dump.
//
// Search: every pattern is at least MinLen (16) bytes, so each occurrence
// covers a whole 8-byte word at an offset that is a multiple of 8 in its
// page, at most 7 bytes after its start; when every pattern is at least 23
// bytes (AES-192 and AES-256 keys: LUKS2's default aes-xts-plain64 with a
// 512-bit key), a word at a multiple of 16, at most 15 bytes after it. The
// index holds the words at offsets 0 to stride-1 of every pattern, behind
// a 64 Kibit filter; the scan loads one word per stride bytes, tests the
// filter and, on the rare hit, looks the word up and compares the whole
// pattern.
package scrub

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// Index parameters.
const (
	wordLen    = 8  // bytes per indexed word
	filterBits = 16 // log2 of the filter's bits
)

// pattern is one byte string to scrub; b is in the Scrubber's arena.
type pattern struct {
	b    []byte
	kind Kind
}

// entry indexes the word at byte off of pattern pat.
type entry struct {
	word uint64
	pat  uint16
	off  uint16
}

// Scrubber finds and overwrites the patterns derived from some volume
// keys. The patterns and the index are secrets: Wipe overwrites them. A
// Scrubber is read-only once made and may serve several Streams in turn.
type Scrubber struct {
	arena  []byte
	pats   []pattern
	head   []entry // words at offsets 0..7 of each pattern, by word
	inner  []entry // words at offsets 1..len-8, by word: tails at a page start
	filter *[1 << (filterBits - 6)]uint64
	mul    uint64 // the filter's hash: the word times mul, top bits
	stride int    // bytes between the words the scan tests: 8 or 16
	maxLen int
	vols   int
	notes  []string
}

// New derives the patterns of vols (see derive) and indexes them. Patterns
// shorter than MinLen or whose first bytes are not random (8 equal bytes
// among the indexed words) are left out with a note, as are duplicates.
func New(vols []Volume) (*Scrubber, error) {
	t := newAESTables()
	s := &Scrubber{filter: new([1 << (filterBits - 6)]uint64), vols: len(vols)}
	var all []secret
	defer func() {
		for _, x := range all {
			wipe(x.b)
		}
	}()
	var owner []int // the volume (from 1) of each of all, for the notes
	for i, v := range vols {
		out, notes, err := derive(v, t)
		if err != nil {
			return nil, fmt.Errorf("scrub: volume %d: %w", i+1, err)
		}
		all = append(all, out...)
		for range out {
			owner = append(owner, i+1)
		}
		for _, n := range notes {
			s.notes = append(s.notes, fmt.Sprintf("volume %d: %s", i+1, n))
		}
	}
	size := 0
	for _, x := range all {
		size += len(x.b)
	}
	s.arena = make([]byte, 0, size)
	for i, x := range all {
		switch {
		case len(x.b) < MinLen:
			s.notes = append(s.notes, fmt.Sprintf("volume %d: the %d-byte %s is shorter than %d bytes: not scrubbed", owner[i], len(x.b), x.kind.noun(), MinLen))
			continue
		case !random(x.b):
			s.notes = append(s.notes, fmt.Sprintf("volume %d: the %s has 8 equal bytes at its start: not scrubbed", owner[i], x.kind.noun()))
			continue
		case s.has(x.b):
			continue
		}
		at := len(s.arena)
		s.arena = append(s.arena, x.b...)
		s.pats = append(s.pats, pattern{b: s.arena[at:len(s.arena):len(s.arena)], kind: x.kind})
		s.maxLen = max(s.maxLen, len(x.b))
	}
	s.stride = 2 * wordLen
	for _, p := range s.pats {
		if len(p.b) < s.stride+wordLen-1 {
			s.stride = wordLen
		}
	}
	if len(s.pats) > 1<<16 {
		s.Wipe()
		return nil, fmt.Errorf("scrub: %d patterns, at most %d", len(s.pats), 1<<16)
	}
	s.index()
	return s, nil
}

// random reports whether none of the words the scan looks for at the start
// of b is one byte repeated: such words fill memory (zeros, poison), and
// each hit would cost a lookup and a compare.
func random(b []byte) bool {
	for off := 0; off < 2*wordLen && off+wordLen <= len(b); off++ {
		if flat(binary.LittleEndian.Uint64(b[off:])) {
			return false
		}
	}
	return true
}

// flat reports whether w is one byte repeated.
func flat(w uint64) bool { return w == (w&0xff)*0x0101010101010101 }

func (s *Scrubber) has(b []byte) bool {
	for _, p := range s.pats {
		if bytes.Equal(p.b, b) {
			return true
		}
	}
	return false
}

// index builds the word tables and the filter.
func (s *Scrubber) index() {
	for i, p := range s.pats {
		for off := 0; off+wordLen <= len(p.b); off++ {
			e := entry{word: binary.LittleEndian.Uint64(p.b[off:]), pat: uint16(i), off: uint16(off)}
			if off < s.stride {
				s.head = append(s.head, e)
			}
			// A flat word inside a pattern would match every page that
			// starts with zeros (or poison), and count a "partial" there.
			if off > 0 && !flat(e.word) {
				s.inner = append(s.inner, e)
			}
		}
	}
	byWord := func(a, b entry) int { return cmp.Compare(a.word, b.word) }
	slices.SortFunc(s.head, byWord)
	slices.SortFunc(s.inner, byWord)
	s.buildFilter()
}

// buildFilter sets the filter bits of the head words, with a hash under
// which no flat word (zeros, 0xff, slab poison: most of the words of a
// dump) hits the filter: were the zero word's bit set, every zero page
// would cost 256 lookups. Each multiplier tried has about even chances
// with 200 words; after 64 the last one stays, and only speed suffers.
func (s *Scrubber) buildFilter() {
	seed := uint64(0x9e3779b97f4a7c15)
	for try := 0; try < 64; try++ {
		seed += 0x9e3779b97f4a7c15
		s.mul = mix64(seed) | 1
		clear(s.filter[:])
		for _, e := range s.head {
			h := e.word * s.mul >> (64 - filterBits)
			s.filter[h>>6] |= 1 << (h & 63)
		}
		clean := true
		for b := range uint64(256) {
			if s.maybe(b * 0x0101010101010101) {
				clean = false
				break
			}
		}
		if clean {
			return
		}
	}
}

// mix64 is splitmix64's finaliser: well-spread odd multipliers from a
// counter.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Patterns counts the patterns by kind.
func (s *Scrubber) Patterns() Counts {
	var c Counts
	for _, p := range s.pats {
		c[p.kind]++
	}
	return c
}

// Volumes is the number of volumes the patterns came from.
func (s *Scrubber) Volumes() int { return s.vols }

// Notes say what could not be derived or is not scrubbed, without key bytes.
func (s *Scrubber) Notes() []string { return s.notes }

// Wipe overwrites the patterns and the index. The Scrubber then finds
// nothing. A nil Scrubber has nothing to wipe.
func (s *Scrubber) Wipe() {
	if s == nil {
		return
	}
	wipe(s.arena)
	clear(s.head)
	clear(s.inner)
	clear(s.filter[:])
	s.arena, s.pats, s.head, s.inner = nil, nil, nil, nil
}

// match is an occurrence in a page: bytes [start, end), where end may run
// past the page into the next one.
type match struct {
	start, end int
	kind       Kind
}

// scan appends to m the occurrences that start in p, found in p's bytes
// as they are (nothing is changed): whole ones, ones that run on into
// next, the page that follows p in memory and in the dump (nil when none
// does), and, with next nil, the first part of one that p's end cuts
// (Partial, when at least a word long). With open (the page before p in
// memory is not the one before it in the dump) the last part of one cut by
// p's start is a Partial too.
func (s *Scrubber) scan(p, next []byte, open bool, m []match) []match {
	le := binary.LittleEndian
	for j := nextHit(s.filter, s.mul, p, 0, s.stride); j < len(p); j = nextHit(s.filter, s.mul, p, j+s.stride, s.stride) {
		for _, e := range lookup(s.head, le.Uint64(p[j:])) {
			// i < 0: begun in the page before, which found it.
			if i := j - int(e.off); i >= 0 {
				m = s.verify(p, next, i, int(e.pat), m)
			}
		}
	}
	switch {
	case len(next) >= wordLen:
		// Occurrences that start in p's last stride-1 bytes have their
		// first word in next.
		if w := le.Uint64(next); s.maybe(w) {
			for _, e := range lookup(s.head, w) {
				if e.off > 0 {
					m = s.verify(p, next, len(p)-int(e.off), int(e.pat), m)
				}
			}
		}
	case s.stride > wordLen && len(p) >= s.stride:
		// The end is open: a cut occurrence starting in p's last stride-1
		// bytes with at least a word in p has p's last word at an offset
		// below wordLen; those starting earlier were found above.
		j := len(p) - wordLen
		if w := le.Uint64(p[j:]); s.maybe(w) {
			for _, e := range lookup(s.head, w) {
				if i := j - int(e.off); e.off < wordLen && i > len(p)-s.stride {
					m = s.verify(p, nil, i, int(e.pat), m)
				}
			}
		}
	}
	if open && len(p) >= wordLen {
		for _, e := range lookup(s.inner, binary.LittleEndian.Uint64(p)) {
			tail := s.pats[e.pat].b[e.off:]
			if len(tail) <= len(p) && bytes.Equal(p[:len(tail)], tail) {
				m = append(m, match{0, len(tail), Partial})
			}
		}
	}
	return m
}

// maybe tests w against the filter.
func (s *Scrubber) maybe(w uint64) bool {
	h := w * s.mul >> (64 - filterBits)
	return s.filter[h>>6]&(1<<(h&63)) != 0
}

// nextHit returns the offset of the first word of p at a multiple of
// stride, at or after j (itself one), whose filter bit is set, or len(p).
// It is the loop that runs over every byte of the dump, kept apart so that
// it stays in registers.
//
// Four words are tested at a time, as four independent chains of load,
// multiply and filter load; only when one of them hits are they told
// apart.
func nextHit(f *[1 << (filterBits - 6)]uint64, mul uint64, p []byte, j, stride int) int {
	le := binary.LittleEndian
	for ; j <= len(p)-4*stride; j += 4 * stride {
		q := p[j : j+4*stride]
		h0 := le.Uint64(q) * mul >> (64 - filterBits)
		h1 := le.Uint64(q[stride:]) * mul >> (64 - filterBits)
		h2 := le.Uint64(q[2*stride:]) * mul >> (64 - filterBits)
		h3 := le.Uint64(q[3*stride:]) * mul >> (64 - filterBits)
		if (f[h0>>6]>>(h0&63)|f[h1>>6]>>(h1&63)|f[h2>>6]>>(h2&63)|f[h3>>6]>>(h3&63))&1 != 0 {
			break
		}
	}
	for ; j <= len(p)-wordLen; j += stride {
		h := le.Uint64(p[j:]) * mul >> (64 - filterBits)
		if f[h>>6]&(1<<(h&63)) != 0 {
			return j
		}
	}
	return len(p)
}

// lookup returns the entries of the sorted table t for word w.
func lookup(t []entry, w uint64) []entry {
	i, found := slices.BinarySearchFunc(t, w, func(e entry, w uint64) int { return cmp.Compare(e.word, w) })
	if !found {
		return nil
	}
	j := i + 1
	for j < len(t) && t[j].word == w {
		j++
	}
	return t[i:j]
}

// verify compares pattern pi with the bytes at p[i:], going on into next.
func (s *Scrubber) verify(p, next []byte, i, pi int, m []match) []match {
	pat := s.pats[pi]
	n := len(p) - i // bytes of p from i
	switch {
	case len(pat.b) <= n:
		if bytes.Equal(p[i:i+len(pat.b)], pat.b) {
			m = append(m, match{i, i + len(pat.b), pat.kind})
		}
	case next != nil:
		if len(pat.b)-n <= len(next) && bytes.Equal(p[i:], pat.b[:n]) && bytes.Equal(next[:len(pat.b)-n], pat.b[n:]) {
			m = append(m, match{i, i + len(pat.b), pat.kind})
		}
	case n >= wordLen:
		if bytes.Equal(p[i:], pat.b[:n]) {
			m = append(m, match{i, len(p), Partial})
		}
	}
	return m
}

// settle zeroes the matches m of page p and its first carry bytes (the
// part of p that occurrences begun in the page before cover), and counts
// each match that is not inside those or an earlier match. It returns how
// many bytes of the next page the matches cover.
func settle(p []byte, carry int, m []match, c *Counts) (next int) {
	// By start, the longest first; of equal ones a whole occurrence before
	// a partial one: a key that ends a page may be the start of its cut
	// schedule too, but what is there is a whole key.
	slices.SortFunc(m, func(a, b match) int {
		if a.start != b.start {
			return cmp.Compare(a.start, b.start)
		}
		if a.end != b.end {
			return cmp.Compare(b.end, a.end)
		}
		return cmp.Compare(a.kind, b.kind) // Partial is the last kind
	})
	covered := carry
	for _, x := range m {
		if x.end > covered {
			c[x.kind]++
			covered = x.end
		}
		clear(p[x.start:min(x.end, len(p))])
		next = max(next, x.end-len(p))
	}
	clear(p[:carry])
	return next
}
