package collector

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// source feeds the writer's bitmaps from a vmcore.Scanner. The writer asks
// for the chunks in order twice (once for the bitmaps, once while writing
// pages); when it starts over, so does the scan, which gives the same bits
// because the memory does not change.
type source struct {
	core     *vmcore.Core
	level    vmcore.Level
	chunk    uint64
	scanner  *vmcore.Scanner
	ch       vmcore.Chunk
	next     uint64
	passes   int
	stats    vmcore.Stats
	warnings []string
	scanned  uint64
	ram      uint64
}

func newSource(core *vmcore.Core, level vmcore.Level) (*source, error) {
	s := &source{core: core, level: level, chunk: vmcore.DefaultChunkPFNs}
	if err := s.restart(); err != nil {
		return nil, err
	}
	s.warnings = s.scanner.Warnings()
	return s, nil
}

func (s *source) restart() error {
	sc, err := s.core.NewScanner(s.level, int(s.chunk))
	if err != nil {
		return &scanFailure{err}
	}
	s.scanner, s.next = sc, 0
	s.passes++
	return nil
}

// FillBitmaps implements diskdump.BitmapSource. Its errors are
// scanFailures, so that Write can tell them from the writer's and fall
// back to an unfiltered dump; so is a panic of the scan, which only
// kernel data no kernel writes can cause, and which must not cost the
// dump.
func (s *source) FillBitmaps(start uint64, ram, dumpable []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &scanFailure{fmt.Errorf("scan at pfn %#x: %v", start, r)}
		}
	}()
	if err := s.fill(start, ram, dumpable); err != nil {
		var sf *scanFailure
		if !errors.As(err, &sf) {
			err = &scanFailure{err}
		}
		return err
	}
	return nil
}

func (s *source) fill(start uint64, ram, dumpable []byte) error {
	if start < s.next {
		if err := s.restart(); err != nil {
			return err
		}
	}
	for s.next <= start {
		ok, err := s.scanner.Next(&s.ch)
		if err != nil {
			return fmt.Errorf("scan at pfn %#x: %w", s.next, err)
		}
		if !ok {
			return fmt.Errorf("scan ended before pfn %#x", start)
		}
		s.next = s.ch.StartPFN + uint64(s.ch.N)
		if s.passes == 1 {
			s.stats.Add(&s.ch.Stats)
			s.scanned += uint64(s.ch.N)
			s.ram += uint64(s.ch.N) - s.ch.Stats[vmcore.NotRAM]
		}
	}
	if s.ch.StartPFN != start {
		return fmt.Errorf("writer asked for pfn %#x, scanner is at %#x", start, s.ch.StartPFN)
	}
	copy(ram, s.ch.RAM)
	copy(dumpable, s.ch.Dump)
	return nil
}

var _ diskdump.BitmapSource = (*source)(nil)

// header gathers what the dump file says about the machine.
func header(core *vmcore.Core, level vmcore.Level) (diskdump.Header, error) {
	off, size := core.VMCOREINFOLocation()
	h := diskdump.Header{
		PageSize:         core.PageSize(),
		MaxPFN:           core.MaxPFN(),
		DumpLevel:        int(level),
		NrCPUs:           core.NrCPUs(),
		Notes:            core.NoteData(),
		VMCOREINFOOffset: int64(off),
		VMCOREINFOSize:   int64(size),
		UTS:              diskdump.Utsname{Sysname: "Linux", Machine: diskdump.UTSMachine(core.Machine())},
		CrashTime:        time.Now(),
	}
	info, err := core.VMCOREINFO()
	if err != nil {
		// A dump without VMCOREINFO is still memory worth keeping.
		return h, nil
	}
	h.UTS.Release = info.OSRelease()
	if t, ok := info.CrashTime(); ok {
		h.CrashTime = t
	}
	if pb, ok := info.PhysBase(); ok {
		h.PhysBase = pb
	}
	if uts, ok := readUTS(core, info); ok {
		h.UTS = uts
	}
	return h, nil
}

// readUTS reads the dead kernel's utsname (init_uts_ns), which crash and
// makedumpfile show as the machine's identity; VMCOREINFO has only the
// release.
func readUTS(core *vmcore.Core, info *vmcore.VMCOREINFO) (diskdump.Utsname, bool) {
	sym, ok := info.Symbol("init_uts_ns")
	if !ok {
		return diskdump.Utsname{}, false
	}
	// struct uts_namespace starts with struct new_utsname name in every
	// kernel that has the lockless printk ring (5.10+); OFFSET says so
	// when the kernel exports it.
	if off, ok := info.Offset("uts_namespace.name"); ok {
		sym += uint64(off)
	}
	t, err := core.NewTranslator()
	if err != nil {
		return diskdump.Utsname{}, false
	}
	b := make([]byte, 6*65)
	if err := t.ReadVirt(sym, b); err != nil {
		return diskdump.Utsname{}, false
	}
	field := func(i int) string {
		f := b[i*65 : (i+1)*65]
		if j := bytes.IndexByte(f, 0); j >= 0 {
			f = f[:j]
		}
		return string(f)
	}
	u := diskdump.Utsname{Sysname: field(0), Nodename: field(1), Release: field(2), Version: field(3), Machine: field(4), Domainname: field(5)}
	if u.Sysname != "Linux" || u.Release != info.OSRelease() {
		return diskdump.Utsname{}, false
	}
	return u, true
}

// pageOffset is the base of the kernel's direct map, for the p_vaddr of
// ELF output (0 when unknown: readers use p_paddr).
func pageOffset(core *vmcore.Core) uint64 {
	info, err := core.VMCOREINFO()
	if err != nil {
		return 0
	}
	if v, ok := info.Number("page_offset_base"); ok {
		return uint64(v)
	}
	return 0
}
