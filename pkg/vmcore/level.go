package vmcore

import (
	"fmt"
	"strings"
)

// Level is a makedumpfile dump level: a bitmask of page kinds to exclude.
type Level int

// Dump level bits.
const (
	LevelZero         Level = 1  // pages filled with zeros (by content)
	LevelCache        Level = 2  // page cache pages without private data
	LevelCachePrivate Level = 4  // all page cache pages
	LevelUser         Level = 8  // user process pages (anonymous, hugetlb)
	LevelFree         Level = 16 // free pages (buddy allocator)
	MaxLevel          Level = 31 // all of the above (kdump's usual -d 31)
)

// Valid reports whether l is in 0..31.
func (l Level) Valid() bool { return l >= 0 && l <= MaxLevel }

// Reason says why a page frame is kept or excluded.
type Reason uint8

// Reasons. Kept and NoMemMap frames are dumped; NotRAM frames are not
// memory; the others are excluded.
const (
	Kept         Reason = iota // dumped
	NotRAM                     // in no PT_LOAD segment
	NoMemMap                   // dumped: its struct page cannot be read
	Zero                       // excluded by the caller: all zeros (level bit 1)
	Cache                      // page cache without private data (level bit 2 or 4)
	CachePrivate               // page cache with private data (level bit 4)
	User                       // anonymous or hugetlb page (level bit 8)
	Free                       // free page of the buddy allocator (level bit 16)
	HWPoison                   // hardware-poisoned page (always excluded)
	Offline                    // logically offline page, e.g. ballooned (always excluded)
	Unaccepted                 // unaccepted memory (level bit 16)
	NumReasons                 // number of reasons
)

var reasonNames = [NumReasons]string{"kept", "not-ram", "no-memmap", "zero", "cache", "cache-private", "user", "free", "hwpoison", "offline", "unaccepted"}

// String returns the reason's short name, e.g. "cache-private".
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", r)
}

// Excluded reports whether a page frame with this reason is left out of
// the dump (not RAM, or excluded by the dump level).
func (r Reason) Excluded() bool { return r != Kept && r != NoMemMap }

// Stats counts page frames per reason.
type Stats [NumReasons]uint64

// Add adds o's counts to s.
func (s *Stats) Add(o *Stats) {
	for i := range s {
		s[i] += o[i]
	}
}

// String lists the non-zero counts, e.g. "kept=1000 free=20".
func (s *Stats) String() string {
	var b strings.Builder
	for r, n := range s {
		if n == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", Reason(r), n)
	}
	return b.String()
}
