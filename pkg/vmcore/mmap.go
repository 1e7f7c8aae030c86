package vmcore

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// MapWindow is the size of one mapping of a vmcore opened with
// OpenMapped: 4 MiB, as makedumpfile maps /proc/vmcore. The kernel fills
// the page table of a window when it is mapped (1024 entries: 8 KiB of
// kernel memory), so the size bounds kernel memory per window, and each
// unmapping costs a TLB flush.
const MapWindow = 4 << 20

// mapReadWindows is how many windows ReadAt keeps: four, so that reads
// that alternate between the struct pages and the page tables they are
// reached through do not map and unmap at every turn. Two were too few: a
// batch of struct pages that spans two windows and the page tables make
// three, and the struct-page scan of a 1.25 GiB guest mapped its page
// table window 14 times (each mapping and unmapping costs about 1 ms
// under TCG).
const mapReadWindows = 4

// OpenMapped opens a vmcore like Open, but reads it through read-only
// memory mappings of MapWindow bytes instead of pread, and lets MapPages
// hand out page data without copying it. It is for /proc/vmcore in the
// crash kernel: there each pread copies every page through a temporary
// kernel mapping of the old memory (ioremap and unmap per page), while an
// mmap maps the old memory itself, once per window; the old memory is not
// page cache, so the mappings do not count in the process's RSS. On a host
// file (ukdump convert), mapped pages of the page cache would count, and
// pread costs little: use Open. When the file cannot be mapped, the Core
// reads with pread.
func OpenMapped(path string) (*Core, error) { return open(path, true) }

type closeBoth struct {
	m *mapper
	f *os.File
}

func (c closeBoth) Close() error {
	c.m.close()
	return c.f.Close()
}

// Window is one mapping of a vmcore file, shared by the pages MapPages
// handed out from it; it is unmapped when the last is released.
type Window struct {
	data []byte
	off  int64 // file offset of data[0]
	refs atomic.Int32
	m    *mapper
}

// Hold takes one more reference, for a page of the window kept past the
// Release of the MapPages result it came with.
func (w *Window) Hold() { w.refs.Add(1) }

// Release gives back one reference (a MapPages result, or a Hold). A
// Window may be released from any goroutine.
func (w *Window) Release() {
	if w != nil && w.refs.Add(-1) == 0 {
		w.m.unmap(w.data)
	}
}

func (w *Window) holds(off, n int64) bool {
	return w != nil && off >= w.off && off+n <= w.off+int64(len(w.data))
}

// mapper maps windows of a file: a few for ReadAt, which copies out of
// them, and the current one of MapPages.
type mapper struct {
	fd   uintptr
	size int64
	mu   sync.Mutex
	read [mapReadWindows]*Window // most recently used first
	cur  *Window                 // MapPages' current window, referenced by the mapper
	// err is the first mapping error and failed the number of
	// mappings that failed: ReadAt then reads with pread and MapPages
	// declines, until a later mapping succeeds (a failure can be
	// passing: the kernel finds no memory for the page table).
	err    error
	failed int
	f      *os.File
}

// window maps the MapWindow-aligned window holding off, or the part of it
// within the file; the caller holds the one reference it starts with.
func (m *mapper) window(off int64) (*Window, error) {
	start := off - off%MapWindow
	n := min(int64(MapWindow), m.size-start)
	data, err := m.mmap(start, int(n))
	if err != nil {
		m.failed++
		if m.err == nil {
			m.err = fmt.Errorf("vmcore: mapping %d bytes at %#x: %w", n, start, err)
		}
		return nil, err
	}
	w := &Window{data: data, off: start, m: m}
	w.refs.Store(1)
	return w, nil
}

// ReadAt copies from the windows, mapping the one it needs in place of the
// least recently used; what it cannot map it reads with pread.
func (m *mapper) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	done := 0
	for done < len(p) {
		at := off + int64(done)
		if at >= m.size {
			break
		}
		w := m.readWindow(at)
		if w == nil {
			break
		}
		n, ok := copyFaulting(p[done:], w.data[at-w.off:])
		if !ok {
			break // pread says what is wrong with the memory
		}
		done += n
	}
	if done < len(p) {
		n, err := m.f.ReadAt(p[done:], off+int64(done))
		return done + n, err
	}
	return done, nil
}

// readWindow returns a read window holding off, mapping it if need be;
// nil when mapping failed.
func (m *mapper) readWindow(off int64) *Window {
	for i, w := range m.read {
		if w.holds(off, 1) {
			copy(m.read[1:i+1], m.read[:i])
			m.read[0] = w
			return w
		}
	}
	w, err := m.window(off)
	if err != nil {
		return nil
	}
	m.read[len(m.read)-1].Release()
	copy(m.read[1:], m.read[:len(m.read)-1])
	m.read[0] = w
	return w
}

// pages returns up to n bytes at file offset off, at least need, from
// the current MapPages window, moving it when it does not hold need bytes
// at off, with a reference for the caller; the bytes stop where the window
// does. nil when mapping failed.
func (m *mapper) pages(off, n, need int64) ([]byte, *Window) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.cur.holds(off, need) {
		w, err := m.window(off)
		if err != nil {
			return nil, nil
		}
		m.cur.Release()
		m.cur = w
		if !w.holds(off, need) {
			return nil, nil
		}
	}
	m.cur.refs.Add(1)
	end := min(off+n, m.cur.off+int64(len(m.cur.data)))
	return m.cur.data[off-m.cur.off : end-m.cur.off], m.cur
}

// close drops the mapper's own references; windows still referenced by
// pages handed out are unmapped when those are released.
func (m *mapper) close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, w := range m.read {
		w.Release()
		m.read[i] = nil
	}
	m.cur.Release()
	m.cur = nil
}

// MapPages returns the data of up to n page frames from pfn, read-only
// and without copying, from a mapping of a Core opened with OpenMapped,
// and the Window to Release when done with it: fewer where the window
// ends (len(data) says how many; at least one). Asking for the rest again
// then maps the next window, instead of mapping this one a second time
// and declining. It declines (ok false; use ReadPages) when the core is
// not mapped, when mapping failed, and when the first page is not whole
// in one window of the file.
func (c *Core) MapPages(pfn uint64, n int) (data []byte, w *Window, ok bool) {
	if c.mapper == nil || n <= 0 {
		return nil, nil, false
	}
	ps := uint64(c.pageSize)
	if pfn > (1<<64-1)/ps-uint64(n) {
		return nil, nil, false
	}
	paddr, size := pfn*ps, uint64(n)*ps
	seg := c.segmentAt(paddr)
	if seg == nil || paddr < seg.PhysStart || paddr-seg.PhysStart+size > seg.FileSize {
		return nil, nil, false
	}
	data, w = c.mapper.pages(int64(seg.FileOffset+paddr-seg.PhysStart), int64(size), int64(ps))
	if data != nil {
		data = data[:len(data)-len(data)%int(ps)]
	}
	return data, w, data != nil
}

// MapErr returns how many mappings of a Core opened with OpenMapped
// failed, and the first error: the parts they were for were read with
// pread instead.
func (c *Core) MapErr() (int, error) {
	if c.mapper == nil {
		return 0, nil
	}
	c.mapper.mu.Lock()
	defer c.mapper.mu.Unlock()
	return c.mapper.failed, c.mapper.err
}

// A mapping of /proc/vmcore raises SIGBUS for old memory the kernel cannot
// read (where pread returns EIO), which would kill the process and cost the
// whole dump. With debug.SetPanicOnFault the fault becomes a panic that
// these two functions recover: the pages go to pread, which returns the
// error, and the caller records them as missing.

// copyFaulting is copy, with ok false (and nothing counted) when reading
// src faults.
func copyFaulting(dst, src []byte) (n int, ok bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(&ok)
	return copy(dst, src), true
}

// ReadablePages returns how many of the pages of data (mapped by
// MapPages), from the first, can be read. Touching one byte of a page
// faults the whole page in, or not, so the later reads of those pages are
// safe.
func ReadablePages(data []byte, pageSize int) (n int) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var ok bool
	defer recoverFault(&ok)
	var sum byte
	for n = 0; n*pageSize < len(data); n++ {
		sum ^= data[n*pageSize]
	}
	runtime.KeepAlive(sum)
	return n
}

// recoverFault recovers a memory fault, setting *ok false; any other
// panic goes on. A fault is a runtime.Error: with an Addr method as the
// kernel reports it, or a nil dereference where the address is not given
// (qemu-user reports 0); the guarded code, a copy or a load between
// checked bounds, cannot raise any other runtime error.
func recoverFault(ok *bool) {
	if r := recover(); r != nil {
		if _, fault := r.(runtime.Error); !fault {
			panic(r)
		}
		*ok = false
	}
}
