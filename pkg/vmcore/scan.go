package vmcore

import (
	"errors"
	"fmt"
)

// DefaultChunkPFNs is the default number of page frames per Scanner chunk
// (128 MiB of memory with 4 KiB pages; a 4 KiB bitmap).
const DefaultChunkPFNs = 1 << 15

// batchPFNs is how many struct pages are read at once (64 KiB of struct
// page for 64-byte pages): each read is one copy out of a mapping, so
// larger batches save nothing but memory.
const batchPFNs = 1 << 10

// Chunk is the result of scanning one range of page frames. Zero pages are
// not known yet: at a level with LevelZero the writer tests each dumped
// page for zeros while it reads the data (makedumpfile keeps zero pages
// set in bitmap 2 and points them all at one stored zero page).
type Chunk struct {
	StartPFN uint64
	N        int      // page frames in the chunk
	RAM      []byte   // bit i (byte i/8, bit i%8): frame StartPFN+i is RAM (kdump bitmap 1)
	Dump     []byte   // bit i: frame is dumped, before zero-page filtering (kdump bitmap 2)
	Reasons  []Reason // per frame: why it is kept or excluded
	Stats    Stats    // counts of Reasons
}

// Scanner walks all page frames 0 .. Core.MaxPFN()-1 in chunks, reading
// struct pages in batches and classifying them for a dump level, in memory
// bounded by the chunk size. It is not safe for concurrent use.
type Scanner struct {
	c        *Core
	cl       *Classifier
	mm       *MemMap
	chunk    uint64
	next     uint64
	pending  Range
	buf      []byte
	stats    Stats
	warnings []string
	// unfiltered says why no page can be excluded by type although the
	// level asks for it; nil when type filtering works or is not asked.
	unfiltered error
}

// NewScanner prepares a scan for level with chunks of chunkPFNs page frames
// (a multiple of 4096; 0 means DefaultChunkPFNs). When the struct pages
// cannot be located (missing VMCOREINFO, unreadable page tables or
// mem_section) no page is excluded by type and Warnings says why.
func (c *Core) NewScanner(level Level, chunkPFNs int) (*Scanner, error) {
	if chunkPFNs == 0 {
		chunkPFNs = DefaultChunkPFNs
	}
	if chunkPFNs < 0 || chunkPFNs%batchPFNs != 0 || chunkPFNs > 1<<30 {
		return nil, fmt.Errorf("vmcore: chunk of %d page frames: want a positive multiple of %d", chunkPFNs, batchPFNs)
	}
	if !level.Valid() {
		return nil, fmt.Errorf("vmcore: dump level %d not in 0..31", level)
	}
	s := &Scanner{c: c, chunk: uint64(chunkPFNs)}
	if level&^LevelZero == 0 {
		s.cl = &Classifier{level: level}
		return s, nil
	}
	info, err := c.VMCOREINFO()
	if err != nil {
		s.cl = &Classifier{level: level}
		s.unfiltered = err
		s.warnings = append(s.warnings, fmt.Sprintf("%v: no page is excluded by type", err))
		return s, nil
	}
	if s.cl, err = NewClassifier(info, level); err != nil {
		return nil, err
	}
	s.warnings = s.cl.Warnings()
	if !s.cl.active() {
		if s.cl.size == 0 {
			s.unfiltered = errors.New("VMCOREINFO lacks the layout of struct page")
		} else {
			s.unfiltered = fmt.Errorf("VMCOREINFO lacks what dump level %d needs", level)
		}
		return s, nil
	}
	t, err := c.NewTranslator()
	if err == nil {
		s.mm, err = c.NewMemMap(t)
	}
	if err != nil {
		s.unfiltered = fmt.Errorf("cannot locate struct pages: %w", err)
		s.warnings = append(s.warnings, fmt.Sprintf("cannot locate struct pages: %v: no page is excluded by type", err))
		s.mm = nil
		return s, nil
	}
	if s.mm.StructPageSize() != s.cl.size {
		return nil, fmt.Errorf("vmcore: %w", formatError(-1, "inconsistent struct page size"))
	}
	s.buf = make([]byte, batchPFNs*s.cl.size)
	return s, nil
}

// Unfiltered says why no page can be excluded by type (no VMCOREINFO, no
// struct page layout in it, page tables or mem_section unreadable) when
// the level asks for some; nil when the scan filters by type or the level
// asks for none. Zero pages are still found by their content.
func (s *Scanner) Unfiltered() error { return s.unfiltered }

// Warnings lists what VMCOREINFO lacked for the level, once each.
func (s *Scanner) Warnings() []string { return append([]string(nil), s.warnings...) }

// Stats returns the counts of all chunks scanned so far.
func (s *Scanner) Stats() Stats { return s.stats }

// Next scans the next chunk into ch, reusing its slices. It returns false
// when all page frames have been scanned.
func (s *Scanner) Next(ch *Chunk) (bool, error) {
	maxPFN := s.c.MaxPFN()
	if s.next >= maxPFN {
		return false, nil
	}
	start := s.next
	n := min(s.chunk, maxPFN-start)
	s.next += n
	ch.StartPFN, ch.N, ch.Stats = start, int(n), Stats{}
	nb := int(n+7) / 8
	ch.RAM = grow(ch.RAM, nb)
	ch.Dump = grow(ch.Dump, nb)
	ch.Reasons = growReasons(ch.Reasons, int(n))
	if err := s.c.RAMBitmap(start, int(n), ch.RAM); err != nil {
		return false, err
	}
	anyRAM := false
	for i := range ch.Reasons {
		if ch.RAM[i>>3]&(1<<(i&7)) != 0 {
			ch.Reasons[i] = Kept
			anyRAM = true
		} else {
			ch.Reasons[i] = NotRAM
		}
	}
	if s.mm != nil && anyRAM {
		for off := uint64(0); off < n; off += batchPFNs {
			k := min(uint64(batchPFNs), n-off)
			if err := s.batch(start+off, ch.Reasons[off:off+k]); err != nil {
				return false, err
			}
		}
	} else if s.pending.End > start { // keep a pending range consistent
		s.pending = Range{}
	}
	copy(ch.Dump, ch.RAM[:nb])
	for i, r := range ch.Reasons {
		ch.Stats[r]++
		if r.Excluded() {
			ch.Dump[i>>3] &^= 1 << (i & 7)
		}
	}
	s.stats.Add(&ch.Stats)
	return true, nil
}

// batch reads and classifies the struct pages of one batch.
func (s *Scanner) batch(start uint64, reasons []Reason) error {
	hasRAM := false
	for _, r := range reasons {
		if r != NotRAM {
			hasRAM = true
			break
		}
	}
	if !hasRAM {
		return nil
	}
	size := uint64(s.cl.size)
	buf := s.buf[:uint64(len(reasons))*size]
	if err := s.mm.ReadPageStructs(start, len(reasons), buf); err != nil {
		// Find which parts have struct pages, one page of struct pages at a time.
		step := max(uint64(s.c.pageSize)/size, 1)
		for off := uint64(0); off < uint64(len(reasons)); off += step {
			k := min(step, uint64(len(reasons))-off)
			if s.mm.ReadPageStructs(start+off, int(k), buf[off*size:(off+k)*size]) != nil {
				for i := off; i < off+k; i++ {
					if reasons[i] == Kept {
						reasons[i] = NoMemMap
					}
				}
			}
		}
	}
	return s.cl.Classify(start, buf, reasons, &s.pending)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func growReasons(b []Reason, n int) []Reason {
	if cap(b) < n {
		return make([]Reason, n)
	}
	return b[:n]
}
