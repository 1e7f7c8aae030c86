package collector

import (
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/scrub"
)

// scrubWriter passes every page through a scrub.Stream on its way to the
// writer. The Stream holds one page back until it has seen the next (an
// occurrence may cross into it), so while it holds one, the page the
// collector must read next is the one after the held page, which the
// writer tells without writing (NextPFNAfter). Memory: one page.
type scrubWriter struct {
	w  pageWriter
	st *scrub.Stream
}

func newScrubWriter(w pageWriter, s *scrub.Scrubber, pageSize int) (*scrubWriter, error) {
	st, err := s.NewStream(pageSize, w.WritePage)
	if err != nil {
		return nil, err
	}
	return &scrubWriter{w: w, st: st}, nil
}

func (s *scrubWriter) NextPFN() (uint64, bool) {
	if s.st.Holding() {
		return s.w.NextPFNAfter()
	}
	return s.w.NextPFN()
}

func (s *scrubWriter) WritePage(pfn uint64, data []byte) error { return s.st.Page(pfn, data) }

// WriteMissing writes the held page first: the missing one breaks the run.
func (s *scrubWriter) WriteMissing(pfn uint64) error {
	if err := s.st.Flush(); err != nil {
		return err
	}
	return s.w.WriteMissing(pfn)
}

// Stats are the writer's: the held page is not counted until written.
func (s *scrubWriter) Stats() diskdump.Stats { return s.w.Stats() }
