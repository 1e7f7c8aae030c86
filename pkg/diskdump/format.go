// Package diskdump writes and reads the kdump-compressed ("diskdump") dump
// format produced by makedumpfile -c/-l/-p/-z and read by crash,
// makedumpfile and libkdumpfile, and writes filtered ELF64 cores.
//
// A kdump-compressed file is laid out in blocks of the page size:
//
//	block 0              disk_dump_header (464 bytes)
//	block 1..            kdump_sub_header (104 bytes) followed by the ELF notes
//	bitmap blocks        bitmap 1 (pfn is RAM), then bitmap 2 (pfn is dumped)
//	page_desc table      24 bytes per set bit of bitmap 2, in pfn order
//	page data            each page compressed on its own (or raw)
//
// Readers locate a page by counting the set bits of bitmap 2 below its pfn,
// so the dumpable set must be fixed before page data is written. The
// [Writer] therefore asks a [BitmapSource] for the bitmaps twice, one chunk
// of pfns at a time (like makedumpfile's cyclic mode): once to write the
// bitmaps and count the dumpable pages, and once while pages are written.
// Its memory use does not grow with the size of the dumped machine.
//
// Typical use:
//
//	w, err := diskdump.NewWriter(file, hdr, diskdump.Options{Compression: diskdump.Snappy})
//	err = w.SetBitmaps(src) // src: a BitmapSource, e.g. &diskdump.MemBitmaps{...}
//	for pfn, ok := w.NextPFN(); ok; pfn, ok = w.NextPFN() {
//		// read the page of pfn into buf
//		err = w.WritePage(pfn, buf)
//	}
//	err = w.Close() // or w.Abort() to stop early (dump marked incomplete)
//
// ELFWriter has the same call sequence. Open/OpenFile read dumps written
// by this package or makedumpfile (any codec: zlib, LZO, snappy, zstd).
//
// All integers are little-endian (the package supports little-endian
// 64-bit targets such as x86_64 and arm64).
package diskdump

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Status flags of the disk_dump_header and compression flags of page
// descriptors, as defined by makedumpfile's diskdump_mod.h.
const (
	FlagZlib            = 0x1  // DUMP_DH_COMPRESSED_ZLIB
	FlagLZO             = 0x2  // DUMP_DH_COMPRESSED_LZO
	FlagSnappy          = 0x4  // DUMP_DH_COMPRESSED_SNAPPY
	FlagIncomplete      = 0x8  // DUMP_DH_COMPRESSED_INCOMPLETE (header only)
	FlagExcludedVmemmap = 0x10 // DUMP_DH_EXCLUDED_VMEMMAP (header only)
	FlagZstd            = 0x20 // DUMP_DH_COMPRESSED_ZSTD
)

const (
	signature      = "KDUMP   "
	headerVersion  = 6
	headerSize     = 464 // sizeof(struct disk_dump_header) on 64-bit
	subHeaderSize  = 104 // sizeof(struct kdump_sub_header) on 64-bit
	pageDescSize   = 24  // sizeof(struct page_desc)
	utsFieldLen    = 65
	maxUint32      = 1<<32 - 1
	minBlockSize   = 512
	maxBlockSize   = 1 << 20
	offTimestamp   = 408
	offStatus      = 424
	offBlockSize   = 428
	offSubHdrSize  = 432
	offBitmapBlock = 436
	offMaxMapnr    = 440
	offNrCPUs      = 460
)

// ErrFormat is wrapped by errors reporting malformed dump files.
var ErrFormat = errors.New("diskdump: malformed file")

// Utsname is the kernel's struct new_utsname; each field occupies 65 bytes
// on disk and longer values are truncated to 64 bytes.
type Utsname struct {
	Sysname, Nodename, Release, Version, Machine, Domainname string
}

// ELFMachine returns the ELF e_machine of the utsname machine, as the
// kernel names it (uname -m): what the dump's page tables and registers
// are, whatever machine reads the dump.
func (u *Utsname) ELFMachine() (elf.Machine, bool) {
	switch u.Machine {
	case "x86_64":
		return elf.EM_X86_64, true
	case "aarch64", "arm64":
		return elf.EM_AARCH64, true
	case "riscv64":
		return elf.EM_RISCV, true
	case "ppc64", "ppc64le":
		return elf.EM_PPC64, true
	case "s390x":
		return elf.EM_S390, true
	}
	return 0, false
}

// UTSMachine returns the utsname machine (uname -m) of an ELF e_machine,
// for dumps whose kernel's utsname cannot be read.
func UTSMachine(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "x86_64"
	case elf.EM_AARCH64:
		return "aarch64"
	case elf.EM_RISCV:
		return "riscv64"
	case elf.EM_PPC64:
		return "ppc64le"
	case elf.EM_S390:
		return "s390x"
	}
	return ""
}

func (u *Utsname) fields() []*string {
	return []*string{&u.Sysname, &u.Nodename, &u.Release, &u.Version, &u.Machine, &u.Domainname}
}

// Header describes the dumped machine: what the Writer needs from the dump
// source and what the reader reports.
type Header struct {
	UTS       Utsname
	CrashTime time.Time
	PageSize  int    // bytes per page, also the block size of the file
	MaxPFN    uint64 // max_mapnr: pfns 0..MaxPFN-1 are covered by the bitmaps
	// PhysBase is the kernel's phys_base (x86_64 relocation). VMCOREINFO
	// has it as signed decimal NUMBER(phys_base) (negative with KASLR, e.g.
	// -190840832): store its two's complement. makedumpfile needs the
	// right value to translate kernel addresses in kdump-compressed input.
	PhysBase  uint64
	DumpLevel int // makedumpfile dump level (-d), informative
	NrCPUs    int // number of NT_PRSTATUS notes; at least 1 is written
	// Notes is the whole PT_NOTE content of the vmcore.
	Notes []byte
	// VMCOREINFOOffset and VMCOREINFOSize locate the VMCOREINFO note
	// payload inside Notes (size 0: none). See ParseNotes.
	VMCOREINFOOffset, VMCOREINFOSize int64
	// ExcludedVmemmap sets DUMP_DH_EXCLUDED_VMEMMAP in the status.
	ExcludedVmemmap bool
}

func (h *Header) validate() error {
	ps := h.PageSize
	if ps < minBlockSize || ps > maxBlockSize || ps&(ps-1) != 0 {
		return fmt.Errorf("diskdump: invalid page size %d", ps)
	}
	if h.MaxPFN == 0 || h.MaxPFN > 1<<52 {
		return fmt.Errorf("diskdump: invalid max pfn %d", h.MaxPFN)
	}
	if h.VMCOREINFOSize < 0 || h.VMCOREINFOOffset < 0 ||
		h.VMCOREINFOOffset+h.VMCOREINFOSize > int64(len(h.Notes)) {
		return fmt.Errorf("diskdump: VMCOREINFO [%d,+%d) outside notes of %d bytes",
			h.VMCOREINFOOffset, h.VMCOREINFOSize, len(h.Notes))
	}
	return nil
}

// layout holds the block geometry shared by the writer and the reader.
type layout struct {
	blockSize    int64
	subHdrBlocks int64
	bitmapLen    int64 // bytes of ONE bitmap (bitmap_blocks/2 blocks)
	bitmap1Off   int64
	bitmap2Off   int64
	descOff      int64
}

func newLayout(blockSize int64, notesLen int64, maxPFN uint64) layout {
	var l layout
	l.blockSize = blockSize
	l.subHdrBlocks = divUp(subHeaderSize+notesLen, blockSize)
	l.bitmapLen = divUp(divUp(int64(maxPFN), 8), blockSize) * blockSize
	l.bitmap1Off = (1 + l.subHdrBlocks) * blockSize
	l.bitmap2Off = l.bitmap1Off + l.bitmapLen
	l.descOff = l.bitmap2Off + l.bitmapLen
	return l
}

func divUp(a, b int64) int64 { return (a + b - 1) / b }

// encodeHeader returns block 0 (headerSize bytes) and the sub-header
// (subHeaderSize bytes).
func encodeHeader(h *Header, l layout, status uint32) (hdr, sub []byte) {
	le := binary.LittleEndian
	hdr = make([]byte, headerSize)
	copy(hdr, signature)
	le.PutUint32(hdr[8:], headerVersion)
	uts := h.UTS
	for i, f := range uts.fields() {
		s := *f
		if len(s) > utsFieldLen-1 {
			s = s[:utsFieldLen-1]
		}
		copy(hdr[12+i*utsFieldLen:], s)
	}
	if !h.CrashTime.IsZero() {
		le.PutUint64(hdr[offTimestamp:], uint64(h.CrashTime.Unix()))
		le.PutUint64(hdr[offTimestamp+8:], uint64(h.CrashTime.Nanosecond()/1000))
	}
	if h.ExcludedVmemmap {
		status |= FlagExcludedVmemmap
	}
	le.PutUint32(hdr[offStatus:], status)
	le.PutUint32(hdr[offBlockSize:], uint32(l.blockSize))
	le.PutUint32(hdr[offSubHdrSize:], uint32(l.subHdrBlocks))
	le.PutUint32(hdr[offBitmapBlock:], uint32(2*l.bitmapLen/l.blockSize))
	le.PutUint32(hdr[offMaxMapnr:], uint32(min(h.MaxPFN, maxUint32)))
	le.PutUint32(hdr[offNrCPUs:], uint32(max(h.NrCPUs, 1)))

	sub = make([]byte, subHeaderSize)
	le.PutUint64(sub[0:], h.PhysBase)
	le.PutUint32(sub[8:], uint32(int32(h.DumpLevel)))
	// split (12), start_pfn (16), end_pfn (24) stay 0: not a split dump.
	noteOff := l.blockSize + subHeaderSize
	if len(h.Notes) > 0 {
		if h.VMCOREINFOSize > 0 {
			le.PutUint64(sub[32:], uint64(noteOff+h.VMCOREINFOOffset))
			le.PutUint64(sub[40:], uint64(h.VMCOREINFOSize))
		}
		le.PutUint64(sub[48:], uint64(noteOff))
		le.PutUint64(sub[56:], uint64(len(h.Notes)))
	}
	// eraseinfo (64, 72), start_pfn_64 (80), end_pfn_64 (88) stay 0.
	le.PutUint64(sub[96:], h.MaxPFN)
	return hdr, sub
}

// cstring returns b up to its first NUL byte.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
