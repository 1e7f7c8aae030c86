package diskdump

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// memFile is an in-memory io.WriterAt / io.ReaderAt.
type memFile struct {
	mu sync.Mutex // Parallel reads bitmaps while it writes pages
	b  []byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// synth is a synthetic machine: RAM with holes, some excluded pages, zero
// pages, incompressible pages and compressible text pages.
type synth struct {
	ps     int
	maxPFN uint64
	bm     MemBitmaps
	secret []byte // content marker of excluded pages
}

func newSynth(maxPFN uint64) *synth {
	s := &synth{ps: 4096, maxPFN: maxPFN, secret: []byte("EXCLUDED-SECRET-PAGE")}
	s.bm.RAM = NewBitmap(maxPFN)
	s.bm.Dumpable = NewBitmap(maxPFN)
	end := maxPFN - 100
	if maxPFN%8 != 0 || maxPFN < 200 { // RAM up to an unaligned end
		end = maxPFN
	}
	for p := uint64(16); p < end; p++ {
		if p >= 300 && p < 500 { // memory hole
			continue
		}
		s.bm.RAM.Set(p)
		excluded := p%5 == 0 || (p >= 1000 && p < 1400) || (p >= 520 && p < 530)
		if !excluded {
			s.bm.Dumpable.Set(p)
		}
	}
	return s
}

func (s *synth) page(pfn uint64) []byte {
	b := make([]byte, s.ps)
	switch {
	case !s.bm.Dumpable.Test(pfn):
		for i := 0; i+len(s.secret) <= len(b); i += len(s.secret) {
			copy(b[i:], s.secret)
		}
	case pfn%7 == 0:
	case pfn%11 == 0:
		r := rand.New(rand.NewPCG(pfn, 1))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	default:
		for i := 0; i < len(b); i += 32 {
			copy(b[i:], fmt.Sprintf("pfn %08x line %04d  ", pfn, i/32))
		}
	}
	return b
}

func (s *synth) header() Header {
	notes := buildNotes(2, []byte("OSRELEASE=6.0.0-test\nPAGESIZE=4096\n"))
	ni, err := ParseNotes(notes)
	if err != nil {
		panic(err)
	}
	return Header{
		UTS:       Utsname{Sysname: "Linux", Nodename: "synth", Release: "6.0.0-test", Version: "#1", Machine: "x86_64"},
		CrashTime: time.Unix(1700000000, 123000),
		PageSize:  s.ps, MaxPFN: s.maxPFN, PhysBase: 0x1000000, DumpLevel: 31, NrCPUs: ni.NrCPUs,
		Notes: notes, VMCOREINFOOffset: ni.VMCOREINFOOffset, VMCOREINFOSize: ni.VMCOREINFOSize,
	}
}

// buildNotes returns an ELF note segment with ncpu NT_PRSTATUS notes and a
// VMCOREINFO note.
func buildNotes(ncpu int, vmcoreinfo []byte) []byte {
	var b bytes.Buffer
	note := func(name string, typ uint32, desc []byte) {
		hdr := make([]byte, 12)
		binary.LittleEndian.PutUint32(hdr[0:], uint32(len(name)+1))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(len(desc)))
		binary.LittleEndian.PutUint32(hdr[8:], typ)
		b.Write(hdr)
		b.WriteString(name)
		b.Write(make([]byte, (len(name)+1+3)&^3-len(name)))
		b.Write(desc)
		b.Write(make([]byte, (len(desc)+3)&^3-len(desc)))
	}
	for i := 0; i < ncpu; i++ {
		note("CORE", ntPRSTATUS, make([]byte, 336))
	}
	note("VMCOREINFO", 0, vmcoreinfo)
	return b.Bytes()
}

// elfCore is a real ELF vmcore opened for tests, read with debug/elf.
type elfCore struct {
	f     *os.File
	loads []*elf.Prog // sorted by paddr
	h     Header
	ram   Bitmap
	vmci  *vmcore.VMCOREINFO
}

// openVMCore opens the real vmcore named by env (see vmcoretest), or skips.
func openVMCore(t testing.TB, env string) *elfCore {
	t.Helper()
	f, _ := vmcoretest.Open(t, env, os.Open)
	ef, err := elf.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	v := &elfCore{f: f}
	var notes []byte
	for _, p := range ef.Progs {
		switch p.Type {
		case elf.PT_NOTE:
			notes = make([]byte, p.Filesz)
			if _, err := p.ReadAt(notes, 0); err != nil {
				t.Fatal(err)
			}
		case elf.PT_LOAD:
			v.loads = append(v.loads, p)
		}
	}
	sort.Slice(v.loads, func(i, j int) bool { return v.loads[i].Paddr < v.loads[j].Paddr })
	ni, err := ParseNotes(notes)
	if err != nil {
		t.Fatal(err)
	}
	if v.vmci, err = vmcore.ParseVMCOREINFO(notes[ni.VMCOREINFOOffset : ni.VMCOREINFOOffset+ni.VMCOREINFOSize]); err != nil {
		t.Fatal(err)
	}
	ps, _ := v.vmci.PageSize()
	ct, _ := v.vmci.CrashTime()
	var maxPFN uint64
	for _, p := range v.loads {
		maxPFN = max(maxPFN, (p.Paddr+p.Memsz+uint64(ps)-1)/uint64(ps))
	}
	v.ram = NewBitmap(maxPFN)
	for _, p := range v.loads {
		v.ram.SetRange(p.Paddr/uint64(ps), (p.Paddr+p.Memsz+uint64(ps)-1)/uint64(ps))
	}
	pb, _ := v.vmci.PhysBase()
	machine := "x86_64"
	if ef.Machine == elf.EM_AARCH64 {
		machine = "aarch64"
	}
	v.h = Header{
		UTS:       Utsname{Sysname: "Linux", Nodename: "test", Release: v.vmci.OSRelease(), Version: "#1", Machine: machine},
		CrashTime: ct, PageSize: ps, MaxPFN: maxPFN, PhysBase: pb, DumpLevel: 1,
		NrCPUs: ni.NrCPUs, Notes: notes, VMCOREINFOOffset: ni.VMCOREINFOOffset, VMCOREINFOSize: ni.VMCOREINFOSize,
	}
	return v
}

// readPage reads pfn from the first PT_LOAD holding it (zero-filling parts
// outside the segments).
func (v *elfCore) readPage(pfn uint64, buf []byte) error {
	clear(buf)
	ps := uint64(len(buf))
	lo, hi := pfn*ps, (pfn+1)*ps
	for _, p := range v.loads {
		s, e := max(lo, p.Paddr), min(hi, p.Paddr+p.Filesz)
		if s >= e {
			continue
		}
		if _, err := v.f.ReadAt(buf[s-lo:e-lo], int64(p.Off+(s-p.Paddr))); err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("pfn %#x not in vmcore", pfn)
}

// pageSink is the interface of Writer and ELFWriter used by writeAll.
type pageSink interface {
	SetBitmaps(BitmapSource) error
	NextPFN() (uint64, bool)
	WritePage(uint64, []byte) error
	Close() error
}

// writeAll drives a writer with pages from read.
func writeAll(t testing.TB, w pageSink, src BitmapSource, ps int, read func(uint64, []byte) error) {
	t.Helper()
	if err := w.SetBitmaps(src); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, ps)
	last := int64(-1)
	for {
		pfn, ok := w.NextPFN()
		if !ok {
			break
		}
		if int64(pfn) <= last {
			t.Fatalf("NextPFN went back from %#x to %#x", last, pfn)
		}
		last = int64(pfn)
		if err := read(pfn, buf); err != nil {
			t.Fatal(err)
		}
		if err := w.WritePage(pfn, buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// needTool returns the path of an external reader, skipping the test when
// it is missing (failing when $CI is set).
func needTool(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s required in CI: %v", path, err)
		}
		t.Skipf("%s not available", path)
	}
	return path
}
