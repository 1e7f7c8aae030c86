package scrub

import "fmt"

// Stream scrubs the pages of one dump as they are written, in ascending
// pfn order, and hands each on (emit) once it is final.
//
// An occurrence may cross from one page into the next. When the next page
// in memory (pfn+1) is also the next page of the dump, both parts are
// overwritten: to do so before the first page goes out, the Stream holds
// each page back (a copy: the caller may reuse its buffer) until the page
// after it arrives, or Flush says none will. When the pages are not
// neighbours (pfn+1 is left out of the dump, not RAM or unreadable, or the
// occurrence continued in another frame, as in vmalloc'd stacks and user
// memory), each page's part is overwritten on its own if it is at least a
// word (8 bytes) long and counted as Partial; a shorter part stays.
//
// Every page is searched as it was read, before any of it is zeroed, so
// that overlapping occurrences are all found; then the union is zeroed.
// Memory: one page and a few matches.
type Stream struct {
	s       *Scrubber
	emit    func(pfn uint64, page []byte) error
	held    []byte
	pfn     uint64
	holding bool
	open    bool // no page before held in memory was the one before it in the dump
	carry   int  // bytes at held's start covered by occurrences from the page before
	m       []match
	counts  Counts
}

// NewStream starts a dump of pageSize-byte pages; emit is called with
// each scrubbed page, in order, and must not keep it.
func (s *Scrubber) NewStream(pageSize int, emit func(pfn uint64, page []byte) error) (*Stream, error) {
	if pageSize < s.maxLen || pageSize < 2*wordLen || pageSize%(2*wordLen) != 0 {
		return nil, fmt.Errorf("scrub: %d-byte pages: want a multiple of %d of at least %d bytes", pageSize, 2*wordLen, max(s.maxLen, 2*wordLen))
	}
	return &Stream{s: s, emit: emit, held: make([]byte, pageSize)}, nil
}

// Holding reports whether a page is held back: the next page the caller
// writes is then the one after it.
func (st *Stream) Holding() bool { return st.holding }

// Page takes the next page of the dump. It settles and emits the page held
// before it, then holds this one.
func (st *Stream) Page(pfn uint64, data []byte) error {
	if len(data) != len(st.held) {
		return fmt.Errorf("scrub: page %#x: %d bytes, want %d", pfn, len(data), len(st.held))
	}
	if st.holding && pfn <= st.pfn {
		return fmt.Errorf("scrub: page %#x after page %#x", pfn, st.pfn)
	}
	adjacent := st.holding && pfn == st.pfn+1
	carry := 0
	if st.holding {
		var next []byte
		if adjacent {
			next = data
		}
		var err error
		if carry, err = st.release(next); err != nil {
			return err
		}
	}
	copy(st.held, data)
	st.pfn, st.holding, st.open, st.carry = pfn, true, !adjacent, carry
	return nil
}

// Flush settles and emits the held page as the last of its run: call it
// before a gap the Stream cannot see (a page recorded as missing) and at
// the end of the dump.
func (st *Stream) Flush() error {
	if !st.holding {
		return nil
	}
	_, err := st.release(nil)
	return err
}

// release scrubs the held page, with next the page after it in the dump
// when that is its neighbour in memory, and emits it. It returns how many
// bytes at next's start the occurrences found cover.
func (st *Stream) release(next []byte) (int, error) {
	st.m = st.s.scan(st.held, next, st.open, st.m[:0])
	carry := settle(st.held, st.carry, st.m, &st.counts)
	st.holding, st.carry = false, 0
	if err := st.emit(st.pfn, st.held); err != nil {
		return 0, err
	}
	return carry, nil
}

// Counts counts the occurrences overwritten so far, by kind; one inside
// another (a key at the start of its own schedule, an XTS half inside the
// key) is not counted again.
func (st *Stream) Counts() Counts { return st.counts }
