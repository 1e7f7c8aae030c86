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
// as exported by VMCOREINFO, for the struct page layouts of Linux 6.1 to
// 7.x (folio order in the first tail page's flags since 6.6, page types of
// 6.9, 6.10 and 6.12, compound_info in 7.1); where VMCOREINFO lacks what a
// level needs, the pages concerned are kept and Warnings says so. A
// Classifier is immutable.
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
	if level&^LevelZero == 0 {
		return c, nil
	}
	if !c.setPageLayout(info) {
		c.warn("VMCOREINFO lacks SIZE(page), OFFSET(page.flags) or OFFSET(page.compound_head/compound_info): no page is excluded by type")
		return c, nil
	}
	c.setFlags(info)
	c.setCompound(info)
	c.setExclusions()
	return c, nil
}

func (c *Classifier) warn(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// pageOffset returns OFFSET(name), or -1 when it is missing or implausible.
func pageOffset(info *VMCOREINFO, name string) int {
	v, ok := info.Offset(name)
	if !ok || v < 0 || v > 1<<16 {
		return -1
	}
	return int(v)
}

// fits reports whether n bytes at offset o are inside a struct page.
func (c *Classifier) fits(o, n int) bool { return o >= 0 && o+n <= c.size }

// setPageLayout sets the size and field offsets of struct page; without
// the size, flags and compound head nothing can be classified (false).
func (c *Classifier) setPageLayout(info *VMCOREINFO) bool {
	size, ok := info.Size("page")
	c.offFlags, c.offMapping, c.offMapcount = pageOffset(info, "page.flags"), pageOffset(info, "page.mapping"), pageOffset(info, "page._mapcount")
	c.offPrivate = pageOffset(info, "page.private")
	c.offHead = pageOffset(info, "page.compound_head")
	if c.offHead < 0 {
		c.offHead = pageOffset(info, "page.compound_info") // Linux 7.1+
	}
	if !ok || size < 8 || size > 1<<12 || c.offFlags < 0 || c.offFlags+8 > int(size) || c.offHead < 0 || c.offHead+8 > int(size) {
		return false
	}
	c.size = int(size)
	return true
}

// setFlags sets the page flag bits and page type values.
func (c *Classifier) setFlags(info *VMCOREINFO) {
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
	if !c.fits(c.offMapcount, 4) {
		c.buddy, c.slabType, c.hugetlbType, c.offlineType, c.unacceptedType = pageType{}, pageType{}, pageType{}, pageType{}, pageType{}
	}
	if n, ok := info.Length("zone.free_area"); ok && n > 0 && n <= 64 {
		c.freeOrders = uint64(n)
	} else {
		c.freeOrders = 11
	}
}

// setCompound finds where the first tail page of a compound page keeps
// its order and (before 6.6) its destructor, by kernel generation.
func (c *Classifier) setCompound(info *VMCOREINFO) {
	switch {
	case pageOffset(info, "page.compound_order") >= 0: // up to 6.2
		c.orderOff = pageOffset(info, "page.compound_order")
	case pageOffset(info, "folio._folio_order") >= c.size: // 6.3 - 6.5
		c.orderOff = pageOffset(info, "folio._folio_order") - c.size
	case c.hugetlbType.ok || c.hugetlbFlag >= 0 || c.slabType.ok: // 6.6+: folio->_flags_1 & 0xff
		c.orderOff = -1
	}
	if c.orderOff >= 0 && !c.fits(c.orderOff, 1) {
		c.orderOff = -2
	}
	if d := pageOffset(info, "page.compound_dtor"); d >= 0 {
		c.dtorOff = d
	} else if d := pageOffset(info, "folio._folio_dtor"); d >= c.size {
		c.dtorOff = d - c.size
	}
	if !c.fits(c.dtorOff, 1) {
		c.dtorOff = -1
	}
	var hasDtor bool
	c.hugetlbDtor, hasDtor = info.Number("HUGETLB_PAGE_DTOR")
	if !hasDtor {
		c.dtorOff = -1
	}
	if c.orderOff == -2 {
		c.warn("VMCOREINFO gives no compound page order: only the head page of a compound page is excluded")
	}
}

// setExclusions decides which of the level's page kinds can be excluded
// with what VMCOREINFO gave, and warns about the others.
func (c *Classifier) setExclusions() {
	level := c.level
	if level&LevelFree != 0 {
		if c.buddy.ok && c.fits(c.offPrivate, 8) {
			c.excludeFree = true
		} else {
			c.warn("VMCOREINFO lacks NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE), OFFSET(page._mapcount) or OFFSET(page.private): free pages are kept")
		}
	}
	if level&(LevelCache|LevelCachePrivate) != 0 {
		switch {
		case c.lru < 0 || !c.fits(c.offMapping, 8):
			c.warn("VMCOREINFO lacks NUMBER(PG_lru) or OFFSET(page.mapping): cache pages are kept")
		case c.private < 0 && level&LevelCachePrivate == 0:
			c.warn("VMCOREINFO lacks NUMBER(PG_private): cache pages are kept")
		default:
			c.excludeCache = true
			c.excludeCachePriv = level&LevelCachePrivate != 0
			if c.swapcache < 0 {
				c.warn("VMCOREINFO lacks NUMBER(PG_swapcache): swap cache pages not on the LRU are kept")
			}
		}
	}
	if level&LevelUser != 0 {
		if c.fits(c.offMapping, 8) {
			c.excludeUser = true
			if !c.hugetlbType.ok && c.hugetlbFlag < 0 && c.dtorOff < 0 {
				c.warn("VMCOREINFO gives no way to identify hugetlb pages: shared hugetlb pages (if any) are kept")
			}
		} else {
			c.warn("VMCOREINFO lacks OFFSET(page.mapping): user pages are kept")
		}
	}
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
		// The fields are decoded here rather than in a method of their own:
		// this loop runs for every page frame and the call would cost a
		// tenth of the classification time.
		sp := structPage{flags: le.Uint64(p[c.offFlags:])}
		if c.offMapcount >= 0 && c.offMapcount+4 <= c.size {
			sp.mapcount = le.Uint32(p[c.offMapcount:])
		}
		if c.offMapping >= 0 && c.offMapping+8 <= c.size {
			sp.mapping = le.Uint64(p[c.offMapping:])
		}
		if c.offPrivate >= 0 && c.offPrivate+8 <= c.size {
			sp.private = le.Uint64(p[c.offPrivate:])
		}
		sp.slab = c.slabType.is(sp.mapcount) || c.slab.in(sp.flags)
		order, hugetlb := uint64(0), false
		if c.headMask != 0 && sp.flags&c.headMask != 0 && i+1 < n && reasons[i+1] != NoMemMap && reasons[i+1] != NotRAM {
			order, hugetlb = c.compound(pfn, &sp, pages[(i+1)*c.size:(i+2)*c.size])
		}
		r, nr := c.reason(pfn, &sp, order, hugetlb)
		if r == Kept {
			continue
		}
		reasons[i] = r
		if nr > 1 {
			*pending = Range{End: pfn + nr, Reason: r}
		}
	}
	return nil
}

// structPage holds the fields of one struct page that Classify decides by.
type structPage struct {
	flags            uint64
	mapcount         uint32 // also page_type
	mapping, private uint64
	slab             bool
}

// compound returns the order of the compound page headed by sp at pfn
// and whether it is a hugetlb page, from its first tail page. An order
// that is implausible or that pfn is not aligned to is taken as 0.
func (c *Classifier) compound(pfn uint64, sp *structPage, tail []byte) (order uint64, hugetlb bool) {
	le := binary.LittleEndian
	switch {
	case c.orderOff >= 0:
		order = uint64(tail[c.orderOff])
	case c.orderOff == -1:
		order = le.Uint64(tail[c.offFlags:]) & 0xff
	}
	switch {
	case c.hugetlbType.ok:
		hugetlb = c.hugetlbType.is(sp.mapcount)
	case c.hugetlbFlag >= 0:
		hugetlb = c.hugetlbFlag.in(le.Uint64(tail[c.offFlags:]))
	case c.dtorOff >= 0:
		hugetlb = int64(tail[c.dtorOff]) == c.hugetlbDtor
	}
	if order > maxCompoundOrder || pfn&(1<<order-1) != 0 {
		order = 0
	}
	return order, hugetlb
}

// reason decides the page frame pfn with struct page sp, the head of a
// compound page of the given order (0 if none): the reason it is excluded
// and how many page frames from pfn share it, or Kept.
func (c *Classifier) reason(pfn uint64, sp *structPage, order uint64, hugetlb bool) (Reason, uint64) {
	nr := uint64(1) << order
	flags := sp.flags
	anon := sp.mapping&1 != 0 && !sp.slab
	cache := c.lru.in(flags) || (c.swapcache.in(flags) && (c.swapbacked < 0 || c.swapbacked.in(flags)))
	switch {
	case c.excludeFree && !sp.slab && c.buddy.is(sp.mapcount):
		if sp.private >= c.freeOrders || pfn&(1<<sp.private-1) != 0 {
			return Kept, 0 // corrupt order: keep
		}
		return Free, 1 << sp.private
	case c.excludeFree && c.unacceptedType.is(sp.mapcount):
		nr = 1 << (c.freeOrders - 1)
		if pfn&(nr-1) != 0 {
			return Kept, 0
		}
		return Unaccepted, nr
	case c.excludeCache && !c.excludeCachePriv && cache && !c.private.in(flags) && !anon:
		return Cache, nr
	case c.excludeCachePriv && cache && !anon:
		if c.private.in(flags) {
			return CachePrivate, nr
		}
		return Cache, nr
	case c.excludeUser && (anon || hugetlb):
		return User, nr
	case c.hwpoison.in(flags):
		return HWPoison, nr
	case !sp.slab && c.offlineType.is(sp.mapcount):
		return Offline, nr
	}
	return Kept, 0
}
