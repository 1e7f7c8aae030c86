// Package collector is ukdump's core collector, the engine that kdumpinit
// runs in the crash kernel and "ukdump convert" runs on a host: it filters
// the pages of an ELF vmcore by dump level (pkg/vmcore) and writes them,
// compressed, in the kdump-compressed or ELF format (pkg/diskdump).
//
// It works in two passes, as makedumpfile's cyclic mode does: the first
// scans struct pages and writes the bitmaps, the second scans again and
// copies the dumpable pages. Scanning twice costs little (tens of millions
// of struct pages a second) and keeps memory the same for any RAM size.
package collector

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/scrub"
	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/printk"
)

// Options say how to write a dump.
type Options struct {
	Level       vmcore.Level
	Compression diskdump.Compression
	// Format is the file format; the zero value is diskdump.KdumpFormat.
	Format diskdump.Format
	// Progress, if set, is called about every Every while pages are
	// written, and once at the end.
	Progress func(Progress)
	Every    time.Duration
	// Unreadable, if set, is told of each page that could not be read; the
	// dump records it as missing (Stats.Missing) and goes on.
	Unreadable func(pfn uint64, err error)
	// Scrub, if set, overwrites the volume keys it knows in every page
	// before the page is compressed and written, in either format (see
	// package scrub); Result.Scrubbed counts what it found.
	Scrub *scrub.Scrubber
	// Warn, if set, is told each warning (Result.Warnings) as soon as it
	// is known, before the pages are written: an unfiltered dump can take
	// long, and the console should say why while it does.
	Warn func(string)
	// Workers is how many goroutines compress pages of a compressed kdump
	// file (diskdump.Parallel); 0 or 1: the writer's own, on the caller's.
	Workers int
	// DataBuffer is the kdump writer's page data per write in bytes; 0:
	// diskdump's default. For the benchmark that weighs it.
	DataBuffer int
}

// Compressors is how many goroutines compress the pages: Workers for a
// compressed kdump file, else none but the writer's own.
func (o Options) Compressors() int {
	if o.Format == diskdump.ELFFormat || o.Compression == diskdump.None {
		return 1
	}
	return max(o.Workers, 1)
}

// Progress is a snapshot of a dump being written.
type Progress struct {
	// Scanned and RAM count page frames classified so far and in all.
	Scanned, RAM uint64
	// Kept is how many pages the dump holds; Written how many are done.
	Kept, Written uint64
	// Out is the number of page data bytes written.
	Out      uint64
	PageSize int
	Elapsed  time.Duration
}

// String formats p for a progress line, e.g. "scanned 100 pages, kept 40,
// written 10 (25%), 3 MiB out, 5.2 MB/s, ETA 6s": the percentage and ETA
// are of the kept pages, the rate is of page data read (pages written
// times the page size), and "out" is the page data stored in the file
// (compressed).
func (p Progress) String() string {
	pct := 100.0
	if p.Kept > 0 {
		pct = 100 * float64(p.Written) / float64(p.Kept)
	}
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Written) * float64(p.PageSize) / s / 1e6
	}
	eta := time.Duration(0)
	if p.Written > 0 && p.Kept > p.Written {
		eta = time.Duration(float64(p.Elapsed) * float64(p.Kept-p.Written) / float64(p.Written)).Round(time.Second)
	}
	return fmt.Sprintf("scanned %d pages, kept %d, written %d (%.0f%%), %d MiB out, %.1f MB/s, ETA %s",
		p.Scanned, p.Kept, p.Written, pct, p.Out>>20, rate, eta)
}

// Result describes a written dump.
type Result struct {
	// Stats counts page frames by the reason they were kept or left out.
	Stats vmcore.Stats
	// Writer counts what was written.
	Writer diskdump.Stats
	// Warnings are what VMCOREINFO lacked for the level: those pages were
	// kept. When filtering was impossible the first says so and why.
	Warnings []string
	// Scrubbed counts the secrets overwritten (Options.Scrub).
	Scrubbed scrub.Counts
	// Level is the dump level written: Options.Level, or the unfiltered
	// level when filtering was impossible.
	Level vmcore.Level
	Took  time.Duration
}

// pageSink is what copyPages writes pages to: a writer, or a scrubWriter
// in front of one.
type pageSink interface {
	NextPFN() (uint64, bool)
	WritePage(pfn uint64, data []byte) error
	WriteMissing(pfn uint64) error
	Stats() diskdump.Stats
}

// heldSink is a pageSink that can keep a page of a mapping until it has
// written it instead of copying it (a diskdump.Parallel).
type heldSink interface {
	WritePageHeld(pfn uint64, data []byte, h diskdump.Holder) error
}

// pageWriter is what the kdump and ELF writers share.
type pageWriter interface {
	pageSink
	NextPFNAfter() (uint64, bool)
	SetBitmaps(diskdump.BitmapSource) error
	Close() error
	Abort() error
}

// DmesgOptions bound the kernel log extraction in the crash kernel.
type DmesgOptions struct {
	// Kick is called as the walk goes on, for a stall watchdog.
	Kick func()
	// Limit stops the walk with an error once it has run this long
	// (0: no limit). A damaged ring must not hold up the dump.
	Limit time.Duration
}

// Dmesg writes the dead kernel's log as makedumpfile --dump-dmesg does.
func Dmesg(core *vmcore.Core, w io.Writer, o DmesgOptions) error {
	info, err := core.VMCOREINFO()
	if err != nil {
		return fmt.Errorf("collector: dmesg: %w", err)
	}
	t, err := core.NewTranslator()
	if err != nil {
		return fmt.Errorf("collector: dmesg: %w", err)
	}
	start := time.Now()
	check := func() error {
		if o.Kick != nil {
			o.Kick()
		}
		if o.Limit > 0 && time.Since(start) > o.Limit {
			return fmt.Errorf("kernel log not read within %s", o.Limit)
		}
		return nil
	}
	if err := printk.Dump(w, t, info, printk.Options{Check: check}); err != nil {
		return fmt.Errorf("collector: dmesg: %w", err)
	}
	return nil
}

// Write filters core and writes the dump to out. When writing fails part
// way, the file is finished as an incomplete dump (readers see which pages
// are missing) and the error says so.
//
// When filtering is impossible (no VMCOREINFO, no struct page layout in
// it, page tables or mem_section that cannot be read, a scan that fails)
// it writes an unfiltered dump instead, and the first warning says why:
// the dead kernel's data that filtering trusts may be what the crash
// damaged, and a dump too big is better than none.
func Write(core *vmcore.Core, out io.WriterAt, o Options) (*Result, error) {
	res, err := write(core, out, o, o.Level, "")
	var sf *scanFailure
	if !errors.As(err, &sf) {
		return res, err
	}
	level := unfilteredLevel(o)
	if level == o.Level {
		return res, err
	}
	// The failed attempt wrote at most headers and bitmaps; a file
	// starts afresh so that none of it is left past the new end.
	if t, ok := out.(interface{ Truncate(int64) error }); ok {
		if terr := t.Truncate(0); terr != nil {
			return res, fmt.Errorf("collector: %w (and truncating for an unfiltered dump failed: %v)", err, terr)
		}
	}
	return write(core, out, o, level, fmt.Sprintf("filtering impossible: %v; writing an unfiltered dump", sf.Err))
}

// unfilteredLevel is the level of a dump that trusts nothing the dead
// kernel wrote: every RAM page. Zero pages are found by their content, not
// by kernel data; in the kdump format they stay in the dump (they all point
// at one stored zero page) and are read back as zeros, so that bit is kept
// there. The ELF format would leave them out, so it keeps none.
func unfilteredLevel(o Options) vmcore.Level {
	if o.Format == diskdump.ELFFormat {
		return 0
	}
	return o.Level & vmcore.LevelZero
}

// scanFailure is a failure of filtering (not of reading or writing): the
// scanner cannot classify pages as the level asks.
type scanFailure struct{ Err error }

func (e *scanFailure) Error() string { return "collector: filtering: " + e.Err.Error() }
func (e *scanFailure) Unwrap() error { return e.Err }

func write(core *vmcore.Core, out io.WriterAt, o Options, level vmcore.Level, fallback string) (*Result, error) {
	start := time.Now()
	h, err := header(core, level)
	if err != nil {
		return nil, err
	}
	src, err := newSource(core, level)
	if err != nil {
		return nil, err
	}
	if why := src.scanner.Unfiltered(); why != nil && level&^vmcore.LevelZero != 0 {
		return nil, &scanFailure{why}
	}
	var warnings []string
	if fallback != "" {
		warnings = append(warnings, fallback)
	}
	warnings = append(warnings, src.warnings...)
	if o.Warn != nil {
		for _, w := range warnings {
			o.Warn(w)
		}
	}
	var w pageWriter
	if o.Format == diskdump.ELFFormat {
		w, err = diskdump.NewELFWriter(out, h, diskdump.ELFOptions{ChunkPFNs: src.chunk, PageOffset: pageOffset(core)})
	} else {
		var dw *diskdump.Writer
		dw, err = diskdump.NewWriter(out, h, diskdump.Options{Compression: o.Compression, ChunkPFNs: src.chunk, DataBuffer: o.DataBuffer})
		w = dw
		if n := o.Compressors(); err == nil && n > 1 {
			w, err = diskdump.NewParallel(dw, n)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	if err := w.SetBitmaps(src); err != nil {
		return nil, errors.Join(fmt.Errorf("collector: bitmaps: %w", err), w.Abort())
	}
	res := &Result{Stats: src.stats, Warnings: warnings, Level: level}
	var sink pageSink = w
	var sw *scrubWriter
	if o.Scrub != nil {
		if sw, err = newScrubWriter(w, o.Scrub, core.PageSize()); err != nil {
			return nil, errors.Join(fmt.Errorf("collector: %w", err), w.Abort())
		}
		sink = sw
	}
	err = copyPages(core, sink, o, src, start)
	if sw != nil {
		if err == nil {
			err = sw.st.Flush()
		}
		res.Scrubbed = sw.st.Counts()
	}
	if err != nil {
		res.Writer = w.Stats()
		if aerr := w.Abort(); aerr != nil {
			return res, fmt.Errorf("collector: %w (and marking the dump incomplete failed: %v)", err, aerr)
		}
		return res, fmt.Errorf("collector: dump incomplete after %d of %d pages: %w", res.Writer.Written, res.Writer.Dumpable, err)
	}
	if err := w.Close(); err != nil {
		return res, fmt.Errorf("collector: %w", err)
	}
	res.Writer = w.Stats()
	res.Took = time.Since(start)
	return res, nil
}

// copyPages reads the dumpable pages in runs and hands them to w: from
// the core's mappings without copying when it has them (OpenMapped), else
// read into a buffer.
func copyPages(core *vmcore.Core, w pageSink, o Options, src *source, start time.Time) error {
	ps := core.PageSize()
	const run = 64
	var buf []byte // allocated when a run cannot be mapped
	every := o.Every
	if every <= 0 {
		every = 2 * time.Second
	}
	last := time.Now()
	report := func() {
		if o.Progress != nil {
			st := w.Stats()
			o.Progress(Progress{Scanned: src.scanned, RAM: src.ram, Kept: st.Dumpable, Written: st.Written,
				Out: st.DataBytes, PageSize: ps, Elapsed: time.Since(start)})
		}
	}
	// Runs of dumpable pages are read with one call; the run length adapts,
	// since after filtering most runs are a page or two long and reading
	// 64 pages for one would copy 63 for nothing.
	n := 1
	for {
		pfn, ok := w.NextPFN()
		if !ok {
			break
		}
		data, win, mapped := core.MapPages(pfn, n)
		if mapped {
			n = len(data) / ps // fewer where the mapping ends
			if k := vmcore.ReadablePages(data[:n*ps], ps); k == 0 {
				// The first page faults: read it with pread, which
				// returns the error instead of SIGBUS.
				win.Release()
				win, mapped, n = nil, false, 1
			} else {
				n, data = k, data[:k*ps]
			}
		}
		if !mapped {
			if buf == nil {
				buf = make([]byte, run*ps)
			}
			data = buf[:n*ps]
			if err := core.ReadPages(pfn, n, data); err != nil {
				n = 1
				data = buf[:ps]
				if err := core.ReadPage(pfn, data); err != nil {
					// One unreadable page (a memory error in the dead
					// machine) must not cost the rest of the dump: it is
					// recorded as missing and the dump goes on.
					if o.Unreadable != nil {
						o.Unreadable(pfn, err)
					}
					if err := w.WriteMissing(pfn); err != nil {
						return err
					}
					n = 0 // nothing read: the run below is empty
				}
			}
		}
		var hold diskdump.Holder
		if win != nil {
			hold = win
		}
		used, err := writeRun(w, pfn, data, n, ps, hold)
		win.Release()
		if err != nil {
			return err
		}
		switch {
		case n == 0:
			n = 1
		case used == n:
			n = min(2*n, run)
		default:
			n = max(1, used)
		}
		if time.Since(last) >= every {
			last = time.Now()
			report()
		}
	}
	report()
	return nil
}

// writeRun writes the pages of data (n pages from pfn) while they are the
// ones w expects next, and returns how many it wrote. hold, when not nil,
// keeps data valid: a heldSink keeps the pages instead of copying them.
func writeRun(w pageSink, pfn uint64, data []byte, n, ps int, hold diskdump.Holder) (int, error) {
	hw, _ := w.(heldSink)
	used := 0
	for used < n {
		page := data[used*ps : (used+1)*ps]
		var err error
		if hw != nil && hold != nil {
			err = hw.WritePageHeld(pfn+uint64(used), page, hold)
		} else {
			err = w.WritePage(pfn+uint64(used), page)
		}
		if err != nil {
			return used, err
		}
		used++
		if next, ok := w.NextPFN(); !ok || next != pfn+uint64(used) {
			break
		}
	}
	return used, nil
}
