// Package synth builds a synthetic x86_64 or arm64 kernel memory image and
// its ELF vmcore, for tests of package vmcore and printk that need no real
// vmcore. Both machines' kernels have the same memory at the same virtual
// addresses (arm64 with 4 KiB pages and 48-bit addresses indexes its four
// levels as x86_64 does); only the page-table entries, the VMCOREINFO
// lines that locate the page tables and the ELF machine differ.
package synth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/ukdump/ukdump/pkg/vmcore"
)

// Reasons used in expectations.
const (
	Kept         = vmcore.Kept
	NotRAM       = vmcore.NotRAM
	NoMemMap     = vmcore.NoMemMap
	Cache        = vmcore.Cache
	CachePrivate = vmcore.CachePrivate
	User         = vmcore.User
	Free         = vmcore.Free
	HWPoison     = vmcore.HWPoison
	Offline      = vmcore.Offline
	Unaccepted   = vmcore.Unaccepted
)

// Reason is vmcore.Reason.
type Reason = vmcore.Reason

const (
	startKernelMap = 0xffffffff80000000
	etCore         = 4
	emX86_64       = 62
	emAArch64      = 183
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	ptLoad         = 1
	ptNote         = 4
	ntPRStatus     = 1
	vmcoreinfoName = "VMCOREINFO"
)

func align4(n int) int { return (n + 3) &^ 3 }

// The synthetic kernel. Physical memory (8 MiB in PT_LOAD 0 and 1, the
// second with a zero-filled tail; a hole; 1 MiB in PT_LOAD 2):
//
//	0x000000  kernel text (virtual 0xffffffff80200000, phys_base -2 MiB)
//	0x100000  page tables: PML4, PDPT/PD kernel, PDPT direct (1 GiB page),
//	          PDPT/PD/PT vmemmap (4 KiB pages; one left unmapped)
//	0x107000  mem_section root array, 0x108000 section array
//	0x110000  printk: prb pointer, ring buffer, descs, infos, text data
//	0x400000  struct pages (vmemmap 0xffffea0000000000)
const (
	synthPhysBase   = -0x200000
	synthKText      = startKernelMap + 0x200000 // virtual address of physical 0
	synthDirect     = 0xffff888000000000
	synthVmemmap    = 0xffffea0000000000
	synthMemmapPhys = 0x400000
	MaxPFN          = 0xa00
	synthMissingPT  = 16 // vmemmap PTE left out: pfns 1024..1087 have no struct page
	synthPML5       = 0x10f000
	synthPrb        = 0x110000
	synthRing       = 0x111000
	synthDescs      = 0x112000
	synthInfos      = 0x113000
	synthData       = 0x114000
	synthDataBits   = 9
	synthCountBits  = 4
)

// Layout is a struct page layout: Linux 6.1 or 7.3 style, on x86_64 or
// arm64.
type Layout struct {
	name                              string
	v73, l5, arm64                    bool
	lru, private, swapcache, swapback int
	slab, hwpoison                    int
	head                              uint64
}

// Layout61 and Layout73 are the two layouts; Layout73L5 is Layout73 with
// 5-level paging.
var (
	Layout61   = Layout{name: "6.1", lru: 4, private: 13, swapcache: 10, swapback: 19, slab: 9, hwpoison: 23, head: 1 << 16}
	Layout73   = Layout{name: "7.3", v73: true, lru: 5, private: 14, swapcache: 10, swapback: 17, slab: -1, hwpoison: 22, head: 1 << 6}
	Layout73L5 = Layout{name: "7.3-l5", v73: true, l5: true, lru: 5, private: 14, swapcache: 10, swapback: 17, slab: -1, hwpoison: 22, head: 1 << 6}
)

// Layout61ARM64 and Layout73ARM64 are the two layouts on arm64.
var (
	Layout61ARM64 = Layout{name: "6.1-arm64", arm64: true, lru: 4, private: 13, swapcache: 10, swapback: 19, slab: 9, hwpoison: 23, head: 1 << 16}
	Layout73ARM64 = Layout{name: "7.3-arm64", v73: true, arm64: true, lru: 5, private: 14, swapcache: 10, swapback: 17, slab: -1, hwpoison: 22, head: 1 << 6}
)

// ARM64 reports whether the layout is of an arm64 kernel.
func (l Layout) ARM64() bool { return l.arm64 }

// Page type values of the two generations.
func (l Layout) buddy() uint32 {
	if l.v73 {
		return 0xf0000000
	}
	return ^uint32(0x80)
}

func (l Layout) offline() uint32 {
	if l.v73 {
		return 0xf1000000
	}
	return ^uint32(0x100)
}

// VMCOREINFO returns the VMCOREINFO note text of the layout.
func (l Layout) VMCOREINFO() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("OSRELEASE=%s.0-synthetic", l.name)
	w("PAGESIZE=4096")
	w("SYMBOL(init_uts_ns)=ffffffff80a00000")
	w("SYMBOL(mem_section)=%x", uint64(synthDirect+0x107000))
	w("LENGTH(mem_section)=2048")
	w("SIZE(mem_section)=16")
	w("OFFSET(mem_section.section_mem_map)=0")
	w("NUMBER(SECTION_SIZE_BITS)=27")
	w("NUMBER(MAX_PHYSMEM_BITS)=46")
	w("SIZE(page)=64")
	w("OFFSET(page.flags)=0")
	w("OFFSET(page._refcount)=52")
	w("OFFSET(page.mapping)=24")
	w("OFFSET(page.lru)=8")
	w("OFFSET(page._mapcount)=48")
	w("OFFSET(page.private)=40")
	if l.v73 {
		w("OFFSET(page.compound_info)=8")
		w("LENGTH(zone.free_area)=4")
	} else {
		w("OFFSET(page.compound_dtor)=16")
		w("OFFSET(page.compound_order)=17")
		w("OFFSET(page.compound_head)=8")
		w("LENGTH(zone.free_area)=11")
	}
	w("SYMBOL(prb)=%x", uint64(synthKText+synthPrb))
	w("SIZE(printk_ringbuffer)=88")
	w("OFFSET(printk_ringbuffer.desc_ring)=0")
	w("OFFSET(printk_ringbuffer.text_data_ring)=48")
	w("OFFSET(printk_ringbuffer.fail)=80")
	w("SIZE(prb_desc_ring)=48")
	w("OFFSET(prb_desc_ring.count_bits)=0")
	w("OFFSET(prb_desc_ring.descs)=8")
	w("OFFSET(prb_desc_ring.infos)=16")
	w("OFFSET(prb_desc_ring.head_id)=24")
	w("OFFSET(prb_desc_ring.tail_id)=32")
	w("SIZE(prb_desc)=24")
	w("OFFSET(prb_desc.state_var)=0")
	w("OFFSET(prb_desc.text_blk_lpos)=8")
	w("SIZE(prb_data_blk_lpos)=16")
	w("OFFSET(prb_data_blk_lpos.begin)=0")
	w("OFFSET(prb_data_blk_lpos.next)=8")
	w("SIZE(printk_info)=88")
	w("OFFSET(printk_info.seq)=0")
	w("OFFSET(printk_info.ts_nsec)=8")
	w("OFFSET(printk_info.text_len)=16")
	w("OFFSET(printk_info.caller_id)=20")
	w("SIZE(prb_data_ring)=32")
	w("OFFSET(prb_data_ring.size_bits)=0")
	w("OFFSET(prb_data_ring.data)=8")
	w("OFFSET(prb_data_ring.head_lpos)=16")
	w("OFFSET(prb_data_ring.tail_lpos)=24")
	w("SIZE(atomic_long_t)=8")
	w("OFFSET(atomic_long_t.counter)=0")
	w("NUMBER(PG_lru)=%d", l.lru)
	w("NUMBER(PG_private)=%d", l.private)
	w("NUMBER(PG_swapcache)=%d", l.swapcache)
	w("NUMBER(PG_swapbacked)=%d", l.swapback)
	if l.slab >= 0 {
		w("NUMBER(PG_slab)=%d", l.slab)
	}
	w("NUMBER(PG_hwpoison)=%d", l.hwpoison)
	w("NUMBER(PG_head_mask)=%d", l.head)
	w("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=%d", int32(l.buddy()))
	w("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=%d", int32(l.offline()))
	if l.v73 {
		w("NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=%d", int32(-184549376))
		w("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=%d", int32(-201326592))
		w("NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)=%d", int32(-150994944))
	} else {
		w("NUMBER(HUGETLB_PAGE_DTOR)=2")
	}
	if l.arm64 {
		// arch/arm64/kernel/vmcore_info.c prints these in hex.
		w("SYMBOL(swapper_pg_dir)=%x", uint64(synthKText+0x100000))
		w("NUMBER(VA_BITS)=48")
		w("NUMBER(kimage_voffset)=%#x", uint64(synthKText))
		w("NUMBER(PHYS_OFFSET)=0x0")
		w("NUMBER(TCR_EL1_T1SZ)=0x10")
		w("KERNELOFFSET=0")
		w("NUMBER(KERNELPACMASK)=0x0")
		w("CRASHTIME=1795668434")
		return b.String()
	}
	w("NUMBER(phys_base)=%d", synthPhysBase)
	if l.l5 {
		w("SYMBOL(init_top_pgt)=%x", uint64(synthKText+synthPML5))
		w("NUMBER(pgtable_l5_enabled)=1")
	} else {
		w("SYMBOL(init_top_pgt)=%x", uint64(synthKText+0x100000))
		w("NUMBER(pgtable_l5_enabled)=0")
	}
	w("KERNELOFFSET=0")
	w("NUMBER(sme_mask)=0")
	w("CRASHTIME=1795668434")
	return b.String()
}

// synthPage describes a struct page to write.
type synthPage struct {
	flags, mapping, private uint64
	mapcount                uint32
	tailOf                  uint64 // head pfn+1 (0: not a tail)
}

// Kernel is the physical memory of the synthetic kernel.
type Kernel struct {
	l     Layout
	mem   []byte            // physical 0 .. 8 MiB
	hi    []byte            // physical 9 MiB .. 10 MiB
	want  map[uint64]Reason // expected reasons at -d 31 (others: kept)
	pages map[uint64]synthPage
}

func (k *Kernel) put64(phys, v uint64) { binary.LittleEndian.PutUint64(k.mem[phys:], v) }

func (k *Kernel) setPage(pfn uint64, p synthPage) {
	k.pages[pfn] = p
	buf := k.mem[synthMemmapPhys+pfn*64:]
	binary.LittleEndian.PutUint64(buf[0:], p.flags)
	binary.LittleEndian.PutUint64(buf[24:], p.mapping)
	binary.LittleEndian.PutUint64(buf[40:], p.private)
	binary.LittleEndian.PutUint32(buf[48:], p.mapcount)
	if p.tailOf != 0 {
		binary.LittleEndian.PutUint64(buf[8:], synthVmemmap+(p.tailOf-1)*64+1)
	}
}

// compound writes a compound page: head flags, order (and hugetlb) in the
// first tail page as the layout keeps it.
func (k *Kernel) compound(pfn uint64, order uint, head synthPage, hugetlb bool, r Reason) {
	head.flags |= k.l.head
	if hugetlb && k.l.v73 {
		head.mapcount = 0xf4000000
	}
	k.setPage(pfn, head)
	for i := uint64(1); i < 1<<order; i++ {
		k.setPage(pfn+i, synthPage{tailOf: pfn + 1, mapcount: 0xffffffff})
		k.want[pfn+i] = r
	}
	k.want[pfn] = r
	tail := k.mem[synthMemmapPhys+(pfn+1)*64:]
	if k.l.v73 {
		tail[0] = byte(order) // folio->_flags_1 & 0xff
	} else {
		tail[17] = byte(order)
		if hugetlb {
			tail[16] = 2
		}
	}
}

func (k *Kernel) run(pfn, n uint64, r Reason) {
	for i := pfn; i < pfn+n; i++ {
		k.want[i] = r
	}
}

// New builds the synthetic kernel for a layout.
func New(l Layout) *Kernel {
	k := &Kernel{l: l, mem: make([]byte, 8<<20), hi: make([]byte, 1<<20), want: map[uint64]Reason{}, pages: map[uint64]synthPage{}}
	const pml4, pdptK, pdK, pdptD, pdptV, pdV, ptV = 0x100000, 0x101000, 0x102000, 0x103000, 0x104000, 0x105000, 0x106000
	// x86_64: present|rw|accessed|dirty, and the large-page bit for
	// blocks. arm64: valid|table, valid|page|AF, valid|AF (a block).
	p, page, block := uint64(0x63), uint64(0x63), uint64(0x63|0x80)
	if l.arm64 {
		p, page, block = 3, 3|1<<10, 1|1<<10
	}
	k.put64(synthPML5+511*8, pml4|p) // used with 5-level paging only
	k.put64(pml4+511*8, pdptK|p)
	k.put64(pdptK+510*8, pdK|p)
	for i := uint64(0); i < 4; i++ { // 0xffffffff80200000 + i*2M -> i*2M
		k.put64(pdK+(i+1)*8, i<<21|block)
	}
	k.put64(pml4+273*8, pdptD|p)
	k.put64(pdptD, block) // 1 GiB page at physical 0
	k.put64(pml4+468*8, pdptV|p)
	k.put64(pdptV, pdV|p)
	k.put64(pdV, ptV|p)
	for i := uint64(0); i < MaxPFN*64/4096; i++ {
		if i != synthMissingPT {
			k.put64(ptV+i*8, (synthMemmapPhys+i*4096)|page)
		}
	}
	k.put64(0x107000, synthDirect+0x108000)     // root 0
	k.put64(0x108000, synthVmemmap|0x7)         // section 0: present, has mem_map, online
	for pfn := uint64(0); pfn < MaxPFN; pfn++ { // unmapped, untyped pages
		binary.LittleEndian.PutUint32(k.mem[synthMemmapPhys+pfn*64+48:], 0xffffffff)
	}
	k.run(1024, 64, NoMemMap)
	k.run(0x800, 0x100, NotRAM)

	file := uint64(synthDirect + 0x200000)
	lru, priv := uint64(1)<<l.lru, uint64(1)<<l.private
	k.setPage(1280, synthPage{mapcount: l.buddy(), private: 3})
	k.run(1280, 8, Free)
	k.compound(1296, 2, synthPage{flags: lru, mapping: file}, false, Cache)
	k.setPage(1300, synthPage{flags: lru | priv, mapping: file, mapcount: 0xffffffff})
	k.want[1300] = CachePrivate
	k.setPage(1301, synthPage{mapping: file + 1})
	k.want[1301] = User
	k.setPage(1302, synthPage{flags: lru, mapping: file + 1})
	k.want[1302] = User
	k.setPage(1303, synthPage{flags: 1 << l.swapcache, mapping: file}) // swap cache bit without swapbacked: kept
	k.setPage(1304, synthPage{flags: 1<<l.swapcache | 1<<l.swapback, mapping: 0})
	k.want[1304] = Cache
	k.compound(1312, 3, synthPage{mapping: file}, true, User)
	k.setPage(1320, synthPage{mapcount: l.offline()})
	k.want[1320] = Offline
	if l.v73 { // slab: mapping bit 0 does not make it anonymous
		k.setPage(1321, synthPage{mapping: file + 1, mapcount: 0xf5000000})
	} else {
		k.setPage(1321, synthPage{flags: 1 << l.slab, mapping: file + 1, mapcount: l.buddy()})
	}
	k.setPage(1322, synthPage{flags: 1 << l.hwpoison})
	k.want[1322] = HWPoison
	k.setPage(1324, synthPage{mapcount: l.buddy(), private: 40}) // corrupt order: kept
	k.setPage(1326, synthPage{mapcount: l.buddy(), private: 1})  // order 1 but pfn 1326 is aligned: ok
	k.run(1326, 2, Free)
	if l.v73 {
		k.setPage(1336, synthPage{mapcount: 0xf7000000}) // unaccepted: 1 << (4-1) pages
		k.run(1336, 8, Unaccepted)
	}
	// A compound head whose order (3) does not fit its misaligned pfn: alone.
	k.compound(1346, 0, synthPage{flags: lru, mapping: file}, false, Cache)
	if l.v73 {
		k.mem[synthMemmapPhys+1347*64] = 3
	} else {
		k.mem[synthMemmapPhys+1347*64+17] = 3
	}
	// Struct pages for PT_LOAD 2 (pfns 0x900..0x9ff) live at 0x424000.. too:
	b := k.mem[synthMemmapPhys+2400*64:]
	binary.LittleEndian.PutUint32(b[48:], l.buddy())
	binary.LittleEndian.PutUint64(b[40:], 2)
	k.run(2400, 4, Free)
	k.printk()
	return k
}

// record is one printk record of the synthetic ring.
type record struct {
	id      uint64
	state   uint64 // 0 reserved, 2 finalized
	ts      uint64
	text    string
	lenHint int  // text_len to store when > 0 (truncation)
	empty   bool // data-less
	wrap    bool // block wraps to the start of the data ring
}

var records = []record{
	{id: 3, state: 2, ts: 1_500_000_000, text: "hello, world"},
	{id: 4, state: 1, ts: 2_000_001_999, text: "line1\nline2"},
	{id: 5, state: 0, ts: 3_000_000_000, text: "reserved: not shown"},
	{id: 6, state: 2, ts: 4_000_000_000, empty: true},
	{id: 7, state: 2, ts: 12345_678_901_234, text: "a\x01b\xe2c\td\x7f"},
	{id: 8, state: 2, ts: 5, text: "truncated text", lenHint: 200},
	{id: 9, state: 2, ts: 6_000_000_000, text: "wrapped block", wrap: true},
}

// Dmesg is the expected makedumpfile --dump-dmesg output.
const Dmesg = "[    1.500000] hello, world\n" +
	"[    2.000001] line1\n               line2\n" +
	"[12345.678901] a\\x01b\\xffffffe2c\td\\x7f\n" +
	"[    0.000000] truncated text\\x00\\x00\n" +
	"[    6.000000] wrapped block\n"

func (k *Kernel) printk() {
	const size = 1 << synthDataBits
	k.put64(synthPrb, synthDirect+synthRing)
	binary.LittleEndian.PutUint32(k.mem[synthRing:], synthCountBits)
	k.put64(synthRing+8, synthDirect+synthDescs)
	k.put64(synthRing+16, synthDirect+synthInfos)
	k.put64(synthRing+24, 9) // head_id
	k.put64(synthRing+32, 3) // tail_id
	binary.LittleEndian.PutUint32(k.mem[synthRing+48:], synthDataBits)
	k.put64(synthRing+56, synthDirect+synthData)
	lpos := uint64(size + 64) // one lap done; the start is for the wrapped block
	for _, r := range records {
		slot := r.id % (1 << synthCountBits)
		d, in := synthDescs+slot*24, synthInfos+slot*88
		k.put64(d, r.state<<62|r.id)
		k.put64(in, r.id+100)
		k.put64(in+8, r.ts)
		tl := len(r.text)
		if r.lenHint > 0 {
			tl = r.lenHint
		}
		binary.LittleEndian.PutUint16(k.mem[in+16:], uint16(tl))
		binary.LittleEndian.PutUint32(k.mem[in+20:], 0x80000000|uint32(r.id))
		if r.empty {
			k.put64(d+8, 1) // begin == next: no data
			k.put64(d+16, 1)
			continue
		}
		blk := (8 + uint64(len(r.text)) + 7) &^ 7
		begin := lpos
		if r.wrap { // start 16 bytes before the end of the ring
			begin = 2*size - 16
			lpos = 2 * size
		}
		at := lpos % size
		k.put64(synthData+at, r.id)
		copy(k.mem[synthData+at+8:], r.text)
		lpos += blk
		k.put64(d+8, begin)
		k.put64(d+16, lpos)
	}
}

// ELF builds the ELF vmcore of k.
func (k *Kernel) ELF() []byte {
	le := binary.LittleEndian
	var notes bytes.Buffer
	note := func(name string, typ uint32, desc []byte) {
		var h [12]byte
		le.PutUint32(h[0:], uint32(len(name)+1))
		le.PutUint32(h[4:], uint32(len(desc)))
		le.PutUint32(h[8:], typ)
		notes.Write(h[:])
		notes.WriteString(name)
		notes.Write(make([]byte, align4(len(name)+1)-len(name)))
		notes.Write(desc)
		notes.Write(make([]byte, align4(len(desc))-len(desc)))
	}
	prstatus := 336 // sizeof(struct elf_prstatus) on x86_64
	if k.l.arm64 {
		prstatus = 392
	}
	note("CORE", ntPRStatus, make([]byte, prstatus))
	note("CORE", ntPRStatus, make([]byte, prstatus))
	note(vmcoreinfoName, 0, []byte(k.l.VMCOREINFO()))
	type seg struct {
		phys, filesz, memsz uint64
		data                []byte
	}
	segs := []seg{
		{0, 6 << 20, 6 << 20, k.mem[:6<<20]},
		{6 << 20, 1 << 20, 2 << 20, k.mem[6<<20 : 7<<20]},
		{9 << 20, 1 << 20, 1 << 20, k.hi},
	}
	nph := 1 + len(segs)
	out := make([]byte, 0x2000)
	copy(out, "\x7fELF\x02\x01\x01")
	le.PutUint16(out[16:], etCore)
	if k.l.arm64 {
		le.PutUint16(out[18:], emAArch64)
	} else {
		le.PutUint16(out[18:], emX86_64)
	}
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[32:], elfHeaderSize)
	le.PutUint16(out[52:], elfHeaderSize)
	le.PutUint16(out[54:], elfPhdrSize)
	le.PutUint16(out[56:], uint16(nph))
	ph := func(i int, typ uint32, off, vaddr, paddr, filesz, memsz uint64) {
		b := out[elfHeaderSize+i*elfPhdrSize:]
		le.PutUint32(b, typ)
		le.PutUint64(b[8:], off)
		le.PutUint64(b[16:], vaddr)
		le.PutUint64(b[24:], paddr)
		le.PutUint64(b[32:], filesz)
		le.PutUint64(b[40:], memsz)
	}
	ph(0, ptNote, 0x1000, 0, 0, uint64(notes.Len()), uint64(notes.Len()))
	copy(out[0x1000:], notes.Bytes())
	for i, s := range segs {
		ph(i+1, ptLoad, uint64(len(out)), synthDirect+s.phys, s.phys, s.filesz, s.memsz)
		out = append(out, s.data[:s.filesz]...)
	}
	return out
}

// wantReason returns the expected reason of pfn at level 31.
func (k *Kernel) Want(pfn uint64) Reason {
	if r, ok := k.want[pfn]; ok {
		return r
	}
	if pfn >= MaxPFN {
		return NotRAM
	}
	return Kept
}

// Name returns "6.1" or "7.3".
func (l Layout) Name() string { return l.name }
