package vmcore

import (
	"encoding/binary"
	"fmt"
)

// maxCompoundOrder bounds a compound page's order (1 GiB hugetlb pages are
// order 18 with 4 KiB pages); larger values are treated as corrupt and the
// page is classified alone.
const maxCompoundOrder = 18

// pageType tests the page_type word (which shares its place with
// _mapcount) against NUMBER(PAGE_*_MAPCOUNT_VALUE).
type pageType struct {
	ok      bool
	topByte bool // 6.12+: the type is the top byte, the low 24 bits are data
	val     uint32
}

func newPageType(info *VMCOREINFO, name string) pageType {
	v, ok := info.Number(name)
	if !ok {
		return pageType{}
	}
	u := uint32(v)
	return pageType{ok: true, val: u, topByte: u&0xffffff == 0 && u>>24 >= 0x80}
}

func (t pageType) is(pt uint32) bool {
	if !t.ok {
		return false
	}
	if t.topByte {
		return pt>>24 == t.val>>24
	}
	return pt == t.val // before 6.12: one cleared bit below PAGE_TYPE_BASE
}

// bit is a page flag: its number from NUMBER(PG_*), or -1 when unknown.
type bit int

func newBit(info *VMCOREINFO, name string) bit {
	v, ok := info.Number(name)
	if !ok || v < 0 || v > 63 {
		return -1
	}
	return bit(v)
}

func (b bit) in(flags uint64) bool { return b >= 0 && flags&(1<<uint(b)) != 0 }

// Classifier decides from struct pages which page frames a dump level
// excludes. It follows the kernel's own tests (include/linux/page-flags.h)
// as exported by VMCOREINFO, for the struct page layouts of Linux 4.16 to
// 7.x; where VMCOREINFO lacks what a level needs, the pages concerned are
// kept and Warnings says so. A Classifier is immutable.
type Classifier struct {
	level    Level
	warnings []string

	size                                   int
	offFlags, offMapping, offMapcount      int
	offPrivate, offHead                    int
	lru, private, swapcache, swapbacked    bit
	slab, hwpoison, hugetlbFlag            bit
	headMask                               uint64
	buddy, slabType, hugetlbType           pageType
	offlineType, unacceptedType            pageType
	orderOff                               int // byte in the first tail page; -1: low byte of its flags (6.6+); -2: unknown
	dtorOff                                int // byte in the first tail page, -1 if none
	hugetlbDtor                            int64
	freeOrders                             uint64 // LENGTH(zone.free_area)
	excludeFree, excludeCache, excludeUser bool
	excludeCachePriv                       bool
}

// NewClassifier builds a classifier for level from VMCOREINFO.
func NewClassifier(info *VMCOREINFO, level Level) (*Classifier, error) {
	if !level.Valid() {
		return nil, fmt.Errorf("vmcore: dump level %d not in 0..31", level)
	}
	c := &Classifier{level: level, orderOff: -2, dtorOff: -1}
	warn := func(format string, args ...any) { c.warnings = append(c.warnings, fmt.Sprintf(format, args...)) }
	if level&^LevelZero == 0 {
		return c, nil
	}
	off := func(name string) int {
		v, ok := info.Offset(name)
		if !ok || v < 0 || v > 1<<16 {
			return -1
		}
		return int(v)
	}
	size, ok := info.Size("page")
	c.offFlags, c.offMapping, c.offMapcount = off("page.flags"), off("page.mapping"), off("page._mapcount")
	c.offPrivate = off("page.private")
	c.offHead = off("page.compound_head")
	if c.offHead < 0 {
		c.offHead = off("page.compound_info") // Linux 7.1+
	}
	if !ok || size < 8 || size > 1<<12 || c.offFlags < 0 || c.offFlags+8 > int(size) || c.offHead < 0 || c.offHead+8 > int(size) {
		warn("VMCOREINFO lacks SIZE(page), OFFSET(page.flags) or OFFSET(page.compound_head/compound_info): no page is excluded by type")
		return c, nil
	}
	c.size = int(size)
	fits := func(o, n int) bool { return o >= 0 && o+n <= c.size }
	c.lru, c.private = newBit(info, "PG_lru"), newBit(info, "PG_private")
	c.swapcache, c.swapbacked = newBit(info, "PG_swapcache"), newBit(info, "PG_swapbacked")
	c.slab, c.hwpoison, c.hugetlbFlag = newBit(info, "PG_slab"), newBit(info, "PG_hwpoison"), newBit(info, "PG_hugetlb")
	if v, ok := info.Number("PG_head_mask"); ok {
		c.headMask = uint64(v)
	}
	c.buddy = newPageType(info, "PAGE_BUDDY_MAPCOUNT_VALUE")
	c.slabType = newPageType(info, "PAGE_SLAB_MAPCOUNT_VALUE")
	c.hugetlbType = newPageType(info, "PAGE_HUGETLB_MAPCOUNT_VALUE")
	c.offlineType = newPageType(info, "PAGE_OFFLINE_MAPCOUNT_VALUE")
	c.unacceptedType = newPageType(info, "PAGE_UNACCEPTED_MAPCOUNT_VALUE")
	if !fits(c.offMapcount, 4) {
		c.buddy, c.slabType, c.hugetlbType, c.offlineType, c.unacceptedType = pageType{}, pageType{}, pageType{}, pageType{}, pageType{}
	}
	if n, ok := info.Length("zone.free_area"); ok && n > 0 && n <= 64 {
		c.freeOrders = uint64(n)
	} else {
		c.freeOrders = 11
	}

	// Compound order and hugetlb identification, by kernel generation.
	switch {
	case off("page.compound_order") >= 0: // up to 6.2
		c.orderOff = off("page.compound_order")
	case off("folio._folio_order") >= int(size): // 6.3 - 6.5
		c.orderOff = off("folio._folio_order") - int(size)
	case c.hugetlbType.ok || c.hugetlbFlag >= 0 || c.slabType.ok: // 6.6+: folio->_flags_1 & 0xff
		c.orderOff = -1
	}
	if c.orderOff >= 0 && !fits(c.orderOff, 1) {
		c.orderOff = -2
	}
	if d := off("page.compound_dtor"); d >= 0 {
		c.dtorOff = d
	} else if d := off("folio._folio_dtor"); d >= int(size) {
		c.dtorOff = d - int(size)
	}
	if !fits(c.dtorOff, 1) {
		c.dtorOff = -1
	}
	var hasDtor bool
	c.hugetlbDtor, hasDtor = info.Number("HUGETLB_PAGE_DTOR")
	if !hasDtor {
		c.dtorOff = -1
	}
	if c.orderOff == -2 {
		warn("VMCOREINFO gives no compound page order: only the head page of a compound page is excluded")
	}

	if level&LevelFree != 0 {
		if c.buddy.ok && fits(c.offPrivate, 8) {
			c.excludeFree = true
		} else {
			warn("VMCOREINFO lacks NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE), OFFSET(page._mapcount) or OFFSET(page.private): free pages are kept")
		}
	}
	if level&(LevelCache|LevelCachePrivate) != 0 {
		switch {
		case c.lru < 0 || !fits(c.offMapping, 8):
			warn("VMCOREINFO lacks NUMBER(PG_lru) or OFFSET(page.mapping): cache pages are kept")
		case c.private < 0 && level&LevelCachePrivate == 0:
			warn("VMCOREINFO lacks NUMBER(PG_private): cache pages are kept")
		default:
			c.excludeCache = true
			c.excludeCachePriv = level&LevelCachePrivate != 0
			if c.swapcache < 0 {
				warn("VMCOREINFO lacks NUMBER(PG_swapcache): swap cache pages not on the LRU are kept")
			}
		}
	}
	if level&LevelUser != 0 {
		if fits(c.offMapping, 8) {
			c.excludeUser = true
			if !c.hugetlbType.ok && c.hugetlbFlag < 0 && c.dtorOff < 0 {
				warn("VMCOREINFO gives no way to identify hugetlb pages: shared hugetlb pages (if any) are kept")
			}
		} else {
			warn("VMCOREINFO lacks OFFSET(page.mapping): user pages are kept")
		}
	}
	return c, nil
}

// Level returns the dump level.
func (c *Classifier) Level() Level { return c.level }

// Warnings lists what VMCOREINFO lacked for the level, once each.
func (c *Classifier) Warnings() []string { return append([]string(nil), c.warnings...) }

// StructPageSize returns SIZE(page), or 0 when struct pages are not used.
func (c *Classifier) StructPageSize() int { return c.size }

// active reports whether struct pages are needed at all.
func (c *Classifier) active() bool {
	return c.size > 0 && (c.excludeFree || c.excludeCache || c.excludeUser || c.hwpoison >= 0 || c.offlineType.ok)
}

// Range is an exclusion that continues past a batch of struct pages: page
// frames below End get Reason (a buddy block or compound page whose head
// was in an earlier batch). The zero value is no exclusion.
type Range struct {
	End    uint64
	Reason Reason
}

// Classify classifies page frames startPFN .. startPFN+len(reasons)-1,
// whose struct pages are consecutive in pages. On entry reasons[i] is Kept
// for frames to classify; NotRAM and NoMemMap entries are left alone
// (except that an exclusion started by a head page covers NoMemMap frames).
// pending carries an exclusion across calls, which must be made in
// increasing page frame order; batches should be aligned to a power of two
// so that a compound head and its first tail page are in the same batch.
func (c *Classifier) Classify(startPFN uint64, pages []byte, reasons []Reason, pending *Range) error {
	n := len(reasons)
	if c.size == 0 {
		return nil
	}
	if len(pages) < n*c.size {
		return fmt.Errorf("vmcore: Classify: %d bytes of struct pages for %d page frames", len(pages), n)
	}
	le := binary.LittleEndian
	for i := 0; i < n; i++ {
		pfn := startPFN + uint64(i)
		if pfn < pending.End {
			if r := reasons[i]; r == Kept || r == NoMemMap {
				reasons[i] = pending.Reason
			}
			continue
		}
		if reasons[i] != Kept {
			continue
		}
		p := pages[i*c.size : (i+1)*c.size]
		if le.Uint64(p[c.offHead:])&1 != 0 {
			continue // tail page: its head decided
		}
		flags := le.Uint64(p[c.offFlags:])
		var mapcount uint32
		var mapping, private uint64
		if c.offMapcount >= 0 && c.offMapcount+4 <= c.size {
			mapcount = le.Uint32(p[c.offMapcount:])
		}
		if c.offMapping >= 0 && c.offMapping+8 <= c.size {
			mapping = le.Uint64(p[c.offMapping:])
		}
		if c.offPrivate >= 0 && c.offPrivate+8 <= c.size {
			private = le.Uint64(p[c.offPrivate:])
		}
		slab := c.slabType.is(mapcount) || c.slab.in(flags)

		// Compound head: order and hugetlb from the first tail page.
		order, hugetlb := uint64(0), false
		if c.headMask != 0 && flags&c.headMask != 0 && i+1 < n && reasons[i+1] != NoMemMap && reasons[i+1] != NotRAM {
			tail := pages[(i+1)*c.size : (i+2)*c.size]
			switch {
			case c.orderOff >= 0:
				order = uint64(tail[c.orderOff])
			case c.orderOff == -1:
				order = le.Uint64(tail[c.offFlags:]) & 0xff
			}
			switch {
			case c.hugetlbType.ok:
				hugetlb = c.hugetlbType.is(mapcount)
			case c.hugetlbFlag >= 0:
				hugetlb = c.hugetlbFlag.in(le.Uint64(tail[c.offFlags:]))
			case c.dtorOff >= 0:
				hugetlb = int64(tail[c.dtorOff]) == c.hugetlbDtor
			}
			if order > maxCompoundOrder || pfn&(1<<order-1) != 0 {
				order = 0
			}
		}
		nr := uint64(1) << order
		anon := mapping&1 != 0 && !slab
		cache := c.lru.in(flags) || (c.swapcache.in(flags) && (c.swapbacked < 0 || c.swapbacked.in(flags)))
		var r Reason
		switch {
		case c.excludeFree && !slab && c.buddy.is(mapcount):
			if private >= c.freeOrders || pfn&(1<<private-1) != 0 {
				continue // corrupt order: keep
			}
			r, nr = Free, 1<<private
		case c.excludeFree && c.unacceptedType.is(mapcount):
			r, nr = Unaccepted, 1<<(c.freeOrders-1)
			if pfn&(nr-1) != 0 {
				continue
			}
		case c.excludeCache && !c.excludeCachePriv && cache && !c.private.in(flags) && !anon:
			r = Cache
		case c.excludeCachePriv && cache && !anon:
			r = Cache
			if c.private.in(flags) {
				r = CachePrivate
			}
		case c.excludeUser && (anon || hugetlb):
			r = User
		case c.hwpoison.in(flags):
			r = HWPoison
		case !slab && c.offlineType.is(mapcount):
			r = Offline
		default:
			continue
		}
		reasons[i] = r
		if nr > 1 {
			*pending = Range{End: pfn + nr, Reason: r}
		}
	}
	return nil
}
