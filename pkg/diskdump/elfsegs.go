package diskdump

// segment is one output PT_LOAD, in pages: [start, start+file) is stored in
// the file, [start+file, start+mem) reads as zeros (p_memsz > p_filesz).
type segment struct {
	start, file, mem uint64
}

// segBuilder turns the per-pfn classes (not RAM, excluded, dumped) into
// PT_LOAD segments. Excluded runs of at least minHole pages are left out of
// the file; shorter ones inside a segment are stored as zero pages. Every
// RAM pfn stays covered by some segment, as makedumpfile -E does.
type segBuilder struct {
	minHole   uint64
	cur       *segment
	excl      uint64 // pending excluded pages
	exclStart uint64
	emit      func(segment)
}

func (b *segBuilder) excluded(start, n uint64) {
	if b.excl == 0 {
		b.exclStart = start
	}
	b.excl += n
}

func (b *segBuilder) dumped(start, n uint64) {
	switch {
	case b.excl == 0:
		if b.cur == nil {
			b.cur = &segment{start: start}
		}
	case b.cur == nil:
		if b.excl >= b.minHole {
			b.emit(segment{start: b.exclStart, mem: b.excl})
			b.cur = &segment{start: start}
		} else {
			b.cur = &segment{start: b.exclStart, file: b.excl, mem: b.excl}
		}
	case b.excl >= b.minHole:
		b.cur.mem += b.excl
		b.emit(*b.cur)
		b.cur = &segment{start: start}
	default:
		b.cur.file += b.excl
		b.cur.mem += b.excl
	}
	b.excl = 0
	b.cur.file += n
	b.cur.mem += n
}

// hole ends the current RAM run.
func (b *segBuilder) hole() {
	if b.cur != nil {
		b.cur.mem += b.excl
		b.emit(*b.cur)
		b.cur = nil
	} else if b.excl > 0 {
		b.emit(segment{start: b.exclStart, mem: b.excl})
	}
	b.excl = 0
}

// segScanner feeds a segBuilder from a bitCursor, a run at a time.
type segScanner struct {
	cur *bitCursor
	b   segBuilder
	pfn uint64
	out []segment // emitted, not yet consumed
}

func newSegScanner(src BitmapSource, maxPFN, chunk, minHole uint64) *segScanner {
	s := &segScanner{cur: newBitCursor(src, maxPFN, chunk)}
	s.b.minHole = minHole
	s.b.emit = func(seg segment) { s.out = append(s.out, seg) }
	return s
}

// step classifies the run of pfns starting at s.pfn (at most up to the end
// of the loaded chunk) and feeds it to the builder. It returns false at the
// end of the bitmap.
func (s *segScanner) step() (bool, error) {
	c := s.cur
	if s.pfn >= c.maxPFN {
		s.b.hole()
		s.pfn = c.maxPFN + 1
		return false, nil
	}
	ram, dump, err := c.test(s.pfn)
	if err != nil {
		return false, err
	}
	end := min(c.start+c.chunk, c.maxPFN)
	p := s.pfn + 1
	for ; p < end; p++ {
		i := p - c.start
		if i%8 == 0 && p+8 <= end {
			// Skip whole bytes of the same class.
			r, d := c.ram[i/8], c.dump[i/8]
			if (ram && r == 0xff || !ram && r == 0) && (dump && d == 0xff || !dump && d == 0) {
				p += 7
				continue
			}
		}
		m := byte(1) << (i % 8)
		if (c.ram[i/8]&m != 0) != ram || (c.dump[i/8]&m != 0) != dump {
			break
		}
	}
	n := p - s.pfn
	switch {
	case !ram:
		s.b.hole()
	case dump:
		s.b.dumped(s.pfn, n)
	default:
		s.b.excluded(s.pfn, n)
	}
	s.pfn = p
	return true, nil
}

// next returns the next segment, or false after the last one.
func (s *segScanner) next() (segment, bool, error) {
	for len(s.out) == 0 {
		more, err := s.step()
		if err != nil {
			return segment{}, false, err
		}
		if !more && len(s.out) == 0 {
			return segment{}, false, nil
		}
	}
	seg := s.out[0]
	s.out = s.out[1:]
	return seg, true, nil
}

// countSegments runs a full scan and returns the number of segments.
func countSegments(src BitmapSource, maxPFN, chunk, minHole uint64) (int, error) {
	s := newSegScanner(src, maxPFN, chunk, minHole)
	n := 0
	for {
		_, ok, err := s.next()
		if err != nil {
			return 0, err
		}
		if !ok {
			return n, nil
		}
		n++
	}
}
