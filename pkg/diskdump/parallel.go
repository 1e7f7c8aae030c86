package diskdump

import (
	"errors"
	"fmt"
	"sync"
)

// batchPages is how many pages travel to an encoder together: enough that
// the hand-over costs little against compressing them, few enough that the
// batches in flight stay small (each holds its pages and their encodings:
// 2 x 64 pages).
const batchPages = 64

// Parallel is a Writer whose pages are compressed on several goroutines:
// the caller hands pages in order as to a Writer (NextPFN, WritePage,
// WriteMissing); they are gathered into batches (copied, or kept where
// they are with WritePageHeld), encoded by workers with a PageEncoder
// each, and written in pfn order by one committing goroutine, so the file
// is byte for byte what the Writer alone writes, and reading, compressing
// and writing overlap. The Writer is used by the committer only (Stats
// gives a snapshot). Memory: 2 x workers + 1 batches of at most
// 2 x batchPages pages, whatever the machine's size.
//
// The caller's position in the bitmaps is read from the file the Writer
// wrote them to, while the committer writes pages to it: the file must
// take ReadAt and WriteAt of different ranges at once, as an *os.File
// does. Where the Writer cannot read its bitmaps back (a file that is not
// an io.ReaderAt), its source would be read by two goroutines, which the
// collector's struct-page scan does not allow: the Parallel is then the
// Writer alone.
//
// makedumpfile --num-threads works alike (threads compress pages, one
// writes them in order); the Writer's own encoder serves one CPU.
type Parallel struct {
	w        *Writer
	workers  int
	maxPFN   uint64
	ps       int
	dumpable uint64
	cur      *bitCursor // the caller's position, ahead of the Writer's
	next     uint64
	handed   uint64 // pages handed in (written or missing)
	fill     *batch
	jobs     chan *batch // to the encoders
	ordered  chan *batch // to the committer, in pfn order
	free     chan *batch
	wg       sync.WaitGroup // encoders and committer
	err      error          // the caller's, sticky
	started  bool
	closed   bool
	serial   bool // the Writer alone

	mu    sync.Mutex // guards what the committer shares
	werr  error      // the committer's first error
	abort bool       // stop writing: Abort was called
	stats Stats      // the Writer's, after the last batch committed
}

type batch struct {
	n       int
	pfns    [batchPages]uint64
	missing [batchPages]bool
	data    [batchPages][]byte // each page: in pages, or held where it is
	held    [batchPages]Holder // what keeps data valid; nil for a copy
	pages   []byte             // copies: batchPages pages, allocated at the first
	out     []byte             // the encodings
	enc     [batchPages]Encoded
	done    chan error // one value per encoding
}

// Holder keeps the memory of a page handed to WritePageHeld valid until
// the page is written: Hold takes a reference, Release gives it back (from
// the committing goroutine). A vmcore.Window is one.
type Holder interface {
	Hold()
	Release()
}

// release gives back the batch's held pages and empties it.
func (b *batch) release() {
	for i := range b.n {
		if b.held[i] != nil {
			b.held[i].Release()
			b.held[i] = nil
		}
		b.data[i] = nil
	}
	b.n = 0
}

// NewParallel returns a Parallel writing through w, whose SetBitmaps has
// not been called yet, with workers encoding goroutines (at least 2; for
// one CPU use w itself).
func NewParallel(w *Writer, workers int) (*Parallel, error) {
	if workers < 2 {
		return nil, fmt.Errorf("diskdump: parallel writer with %d workers: use the Writer", workers)
	}
	if w.state != stateHeader {
		return nil, errors.New("diskdump: parallel writer: the Writer has its bitmaps already")
	}
	return &Parallel{w: w, workers: workers, maxPFN: w.h.MaxPFN, ps: w.h.PageSize}, nil
}

// SetBitmaps sets the Writer's bitmaps and starts the encoders and the
// committer.
func (p *Parallel) SetBitmaps(src BitmapSource) error {
	if err := p.w.SetBitmaps(src); err != nil {
		return err
	}
	if _, ok := p.w.src.(*fileBitmaps); !ok {
		p.serial = true
		return nil
	}
	encs := make([]*PageEncoder, p.workers)
	for i := range encs {
		enc, err := NewPageEncoder(p.w.enc.c, p.ps)
		if err != nil {
			for _, e := range encs[:i] {
				e.Close()
			}
			return err
		}
		encs[i] = enc
	}
	p.cur = newBitCursor(p.w.src, p.maxPFN, p.w.opt.ChunkPFNs)
	p.next, p.dumpable, p.stats = p.w.next, p.w.stats.Dumpable, p.w.stats
	n := 2*p.workers + 1
	p.jobs, p.ordered, p.free = make(chan *batch, n), make(chan *batch, n), make(chan *batch, n)
	for range n {
		// Room for EncodeInto to compress the last page in place too.
		p.free <- &batch{out: make([]byte, 0, batchPages*p.ps+encs[0].Room()), done: make(chan error, 1)}
	}
	p.wg.Add(len(encs) + 1)
	for _, enc := range encs {
		go p.encode(enc)
	}
	go p.commit()
	p.started = true
	p.fill = <-p.free
	return nil
}

// encode is a worker: it encodes each batch it is given, into the batch.
func (p *Parallel) encode(enc *PageEncoder) {
	defer p.wg.Done()
	defer enc.Close()
	for b := range p.jobs {
		var err error
		b.out = b.out[:0]
		for i := range b.n {
			if b.missing[i] {
				continue
			}
			page := b.data[i]
			e, eerr := enc.EncodeInto(page, b.out[len(b.out):cap(b.out)])
			if eerr != nil {
				err = fmt.Errorf("diskdump: page %#x: %w", b.pfns[i], eerr)
				break
			}
			if !e.Zero && e.Flags != 0 {
				// Smaller than a page, so b.out never grows past
				// its capacity and earlier slices stay valid.
				// EncodeInto compressed it in b.out's free part
				// when it could: then b.out only takes it in.
				at := len(b.out)
				if inPlace(b.out, e.Data) {
					b.out = b.out[:at+len(e.Data)]
				} else {
					b.out = append(b.out, e.Data...)
				}
				e.Data = b.out[at:len(b.out):len(b.out)]
			} else if !e.Zero {
				e.Data = page
			}
			b.enc[i] = e
		}
		b.done <- err
	}
}

// commit is the committer: it writes the batches in order as they are
// encoded and hands them back. After an error, or once aborted, it only
// hands them back.
func (p *Parallel) commit() {
	defer p.wg.Done()
	for b := range p.ordered {
		err := <-b.done
		p.mu.Lock()
		skip := p.werr != nil || p.abort
		p.mu.Unlock()
		if err == nil && !skip {
			err = p.write(b)
		}
		p.mu.Lock()
		if err != nil && p.werr == nil {
			p.werr = err
		}
		p.stats = p.w.Stats()
		p.mu.Unlock()
		b.release()
		p.free <- b
	}
}

func (p *Parallel) write(b *batch) error {
	for i := range b.n {
		var err error
		if b.missing[i] {
			err = p.w.WriteMissing(b.pfns[i])
		} else {
			err = p.w.WriteEncoded(b.pfns[i], b.enc[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// committed returns the committer's error.
func (p *Parallel) committed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.werr
}

// NextPFN is Writer.NextPFN for the pages handed in so far.
func (p *Parallel) NextPFN() (uint64, bool) {
	if p.serial {
		return p.w.NextPFN()
	}
	if !p.started || p.closed || p.next >= p.maxPFN {
		return 0, false
	}
	return p.next, true
}

// NextPFNAfter is Writer.NextPFNAfter for the pages handed in so far.
func (p *Parallel) NextPFNAfter() (uint64, bool) {
	if p.serial {
		return p.w.NextPFNAfter()
	}
	if !p.started || p.closed || p.err != nil || p.next >= p.maxPFN {
		return 0, false
	}
	return pfnAfter(p.cur, p.next, p.maxPFN)
}

// WritePage is Writer.WritePage; data is copied.
func (p *Parallel) WritePage(pfn uint64, data []byte) error {
	return p.WritePageHeld(pfn, data, nil)
}

// WritePageHeld is WritePage without the copy: data stays where it is,
// with a reference taken on h, until the page is written; h nil copies.
// The collector hands pages of the mapped /proc/vmcore so: copying them
// into the batches was a sixth of the dump's CPU time on two CPUs.
func (p *Parallel) WritePageHeld(pfn uint64, data []byte, h Holder) error {
	if p.serial {
		return p.w.WritePage(pfn, data)
	}
	if len(data) != p.ps {
		return fmt.Errorf("diskdump: page %#x: %d bytes, want %d", pfn, len(data), p.ps)
	}
	return p.add(pfn, data, h)
}

// WriteMissing is Writer.WriteMissing.
func (p *Parallel) WriteMissing(pfn uint64) error {
	if p.serial {
		return p.w.WriteMissing(pfn)
	}
	return p.add(pfn, nil, nil)
}

func (p *Parallel) add(pfn uint64, data []byte, h Holder) error {
	if p.err != nil {
		return p.err
	}
	if !p.started || p.closed {
		return errors.New("diskdump: WritePage before SetBitmaps or after Close")
	}
	if err := checkOrder(pfn, p.next, p.maxPFN, p.handed, p.dumpable); err != nil {
		return err
	}
	b, ps := p.fill, p.ps
	b.pfns[b.n], b.missing[b.n] = pfn, data == nil
	switch {
	case data == nil:
	case h != nil:
		h.Hold()
		b.data[b.n], b.held[b.n] = data, h
	default:
		if b.pages == nil {
			b.pages = make([]byte, batchPages*ps)
		}
		b.data[b.n] = b.pages[b.n*ps : (b.n+1)*ps]
		copy(b.data[b.n], data)
	}
	b.n++
	p.handed++
	next, err := p.cur.nextDumpable(pfn + 1)
	if err != nil {
		p.err = err
		return err
	}
	p.next = next
	if b.n == batchPages {
		p.submit()
		if err := p.committed(); err != nil {
			p.err = err
		}
	}
	return p.err
}

// submit hands the filling batch to the encoders and the committer, and
// takes a free one, waiting for the committer when none is.
func (p *Parallel) submit() {
	// Neither send blocks: each channel holds every batch.
	p.ordered <- p.fill
	p.jobs <- p.fill
	p.fill = <-p.free
}

// drain hands in the last batch, waits for the committer and stops the
// encoders.
func (p *Parallel) drain() error {
	if !p.started || p.closed {
		return p.err
	}
	p.closed = true
	if p.fill.n > 0 {
		p.ordered <- p.fill
		p.jobs <- p.fill
	}
	close(p.ordered)
	close(p.jobs)
	p.wg.Wait()
	if err := p.committed(); err != nil && p.err == nil {
		p.err = err
	}
	return p.err
}

// Close writes the pages still in flight and closes the Writer.
func (p *Parallel) Close() error {
	if err := p.drain(); err != nil {
		return errors.Join(err, p.w.Abort())
	}
	return p.w.Close()
}

// Abort stops writing and leaves the dump marked incomplete with the
// pages written so far.
func (p *Parallel) Abort() error {
	p.mu.Lock()
	p.abort = true
	p.mu.Unlock()
	_ = p.drain() // whatever failed before is the caller's error already
	return p.w.Abort()
}

// Stats returns the Writer's counters as of the last batch written: pages
// in flight are not counted.
func (p *Parallel) Stats() Stats {
	if !p.started || p.closed || p.serial {
		return p.w.Stats()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}
