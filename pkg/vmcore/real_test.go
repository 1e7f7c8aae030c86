package vmcore

import (
	"encoding/binary"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/internal/zeropage"
)

// realCore opens the real vmcore named by env (see vmcoretest) or skips.
func realCore(t testing.TB, env string) (*Core, string) {
	t.Helper()
	return vmcoretest.Open(t, env, Open)
}

// scanAll runs a Scanner over the whole core, calling fn per chunk.
func scanAll(t testing.TB, c *Core, level Level, fn func(ch *Chunk)) *Scanner {
	t.Helper()
	s, err := c.NewScanner(level, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ch Chunk
	for {
		ok, err := s.Next(&ch)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return s
		}
		if fn != nil {
			fn(&ch)
		}
	}
}

func TestRealCores(t *testing.T) {
	for _, env := range vmcoretest.All() {
		t.Run(env, func(t *testing.T) {
			c, _ := realCore(t, env)
			info, err := c.VMCOREINFO()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d CPUs, %d segments, max pfn %#x", info.OSRelease(), c.NrCPUs(), len(c.Segments()), c.MaxPFN())
			if c.NrCPUs() < 1 {
				t.Errorf("no NT_PRSTATUS note")
			}
			s := scanAll(t, c, MaxLevel, nil)
			st := s.Stats()
			t.Logf("-d 31 (before zero pages): %s; warnings %q", st.String(), s.Warnings())
			if st[Free] == 0 || st[Kept] == 0 {
				t.Errorf("implausible stats %s", st.String())
			}
		})
	}
}

// kdumpFile is the part of a kdump-compressed file the comparison needs.
type kdumpFile struct {
	bitmap2   []byte
	maxMapnr  uint64
	descs     []byte // page_desc table, 24 bytes per dumped page frame
	zeroStart uint64 // offset of the page data area (makedumpfile's shared zero page)
}

// readKdump reads the dumpable bitmap and page descriptors of a
// kdump-compressed file (a minimal reader; pkg/diskdump has the full one).
func readKdump(t *testing.T, path string) *kdumpFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(b) < 4096 || string(b[:8]) != "KDUMP   " {
		t.Fatalf("%s: not a kdump-compressed file", path)
	}
	bs := uint64(le.Uint32(b[428:]))
	sub := uint64(le.Uint32(b[432:]))
	bmBlocks := uint64(le.Uint32(b[436:]))
	k := &kdumpFile{maxMapnr: uint64(le.Uint32(b[440:]))}
	if m := le.Uint64(b[bs+96:]); m != 0 {
		k.maxMapnr = m
	}
	start := (1 + sub) * bs
	half := bmBlocks / 2 * bs
	if start+2*half > uint64(len(b)) {
		t.Fatalf("%s: bitmaps beyond end of file", path)
	}
	k.bitmap2 = b[start+half : start+2*half]
	var n uint64
	for _, x := range k.bitmap2 {
		n += uint64(bits.OnesCount8(x))
	}
	descStart := start + 2*half
	if descStart+24*n > uint64(len(b)) {
		t.Fatalf("%s: page descriptors beyond end of file", path)
	}
	k.descs = b[descStart : descStart+24*n]
	k.zeroStart = descStart + 24*n
	return k
}

// TestMakedumpfileAgreement compares the page frames dumped at -d 31 with
// the kdump-compressed file that makedumpfile writes for the same vmcore:
// its bitmap 2 must equal our dumpable set, and the frames it stores as
// its shared zero page must be exactly those zeropage.Is finds among them
// (makedumpfile keeps zero pages in bitmap 2, pointing at one zero page).
func TestMakedumpfileAgreement(t *testing.T) {
	c, path := realCore(t, vmcoretest.Debian61)
	mdf, err := exec.LookPath("makedumpfile")
	if err != nil {
		t.Skip("makedumpfile not installed")
	}
	out := filepath.Join(t.TempDir(), "d31.kdump")
	if b, err := exec.Command(mdf, "-d", "31", path, out).CombinedOutput(); err != nil {
		t.Fatalf("makedumpfile: %v\n%s", err, b)
	}
	k := readKdump(t, out)
	if k.maxMapnr != c.MaxPFN() {
		t.Errorf("max_mapnr %#x, ours %#x", k.maxMapnr, c.MaxPFN())
	}
	le := binary.LittleEndian
	page := make([]byte, c.PageSize())
	var agree, onlyOurs, onlyTheirs, zeroDiff Stats
	desc := 0
	scanAll(t, c, MaxLevel, func(ch *Chunk) {
		for i := 0; i < ch.N; i++ {
			pfn := ch.StartPFN + uint64(i)
			r := ch.Reasons[i]
			ours := !r.Excluded()
			theirs := pfn/8 < uint64(len(k.bitmap2)) && k.bitmap2[pfn/8]&(1<<(pfn%8)) != 0
			if ours && theirs {
				if err := c.ReadPage(pfn, page); err != nil {
					t.Fatal(err)
				}
				d := k.descs[desc*24:]
				theirZero := le.Uint64(d) == k.zeroStart
				if zeropage.Is(page) {
					r = Zero
				}
				if theirZero != (r == Zero) {
					zeroDiff[r]++
				}
			}
			if theirs {
				desc++
			}
			switch {
			case ours == theirs:
				agree[r]++
			case ours:
				onlyOurs[r]++
			default:
				onlyTheirs[r]++
			}
		}
	})
	t.Logf("agree: %s", agree.String())
	t.Logf("dumped only by us: %s", onlyOurs.String())
	t.Logf("dumped only by makedumpfile: %s", onlyTheirs.String())
	t.Logf("zero-page disagreements: %s", zeroDiff.String())
	// No difference is expected for this Linux 6.1 core (makedumpfile
	// 1.7.2 knows the 6.1 struct page layout).
	if onlyOurs != (Stats{}) || onlyTheirs != (Stats{}) || zeroDiff != (Stats{}) {
		t.Errorf("unexplained differences with makedumpfile")
	}
	if agree[Free] == 0 || agree[Cache] == 0 || agree[User] == 0 || agree[Zero] == 0 {
		t.Errorf("expected free, cache, user and zero pages in a real core: %s", agree.String())
	}
}

// nrFreePages sums the kernel's NR_FREE_PAGES counters of all zones.
func nrFreePages(t *testing.T, c *Core) uint64 {
	t.Helper()
	info, _ := c.VMCOREINFO()
	tr, err := c.NewTranslator()
	if err != nil {
		t.Fatal(err)
	}
	must := func(v int64, ok bool) uint64 {
		if !ok {
			t.Skip("VMCOREINFO lacks the zone counters")
		}
		return uint64(v)
	}
	u64 := func(addr uint64) uint64 {
		var b [8]byte
		if err := tr.ReadVirt(addr, b[:]); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint64(b[:])
	}
	var pgdats []uint64
	if a, ok := info.Symbol("contig_page_data"); ok {
		pgdats = append(pgdats, a)
	} else if a, ok := info.Symbol("node_data"); ok {
		n := must(info.Length("node_data"))
		for i := uint64(0); i < n; i++ {
			if p := u64(a + 8*i); p != 0 {
				pgdats = append(pgdats, p)
			}
		}
	} else {
		t.Skip("VMCOREINFO lacks contig_page_data and node_data")
	}
	zones := must(info.Offset("pglist_data.node_zones"))
	nrZones := must(info.Offset("pglist_data.nr_zones"))
	zoneSize := must(info.Size("zone"))
	vmStat := must(info.Offset("zone.vm_stat"))
	idx := must(info.Number("NR_FREE_PAGES"))
	var sum uint64
	for _, pg := range pgdats {
		n := u64(pg+nrZones) & 0xffffffff
		for z := uint64(0); z < n && z < 8; z++ {
			sum += u64(pg + zones + z*zoneSize + vmStat + idx*8)
		}
	}
	return sum
}

// TestFreePagesMatchKernelCounter checks the free pages found by the
// classifier against the kernel's own NR_FREE_PAGES counters (per-CPU page
// lists are neither: both are kept).
func TestFreePagesMatchKernelCounter(t *testing.T) {
	for _, env := range vmcoretest.All() {
		t.Run(env, func(t *testing.T) {
			c, _ := realCore(t, env)
			want := nrFreePages(t, c)
			st := scanAll(t, c, LevelFree, nil).Stats()
			t.Logf("free pages: ours %d, NR_FREE_PAGES %d", st[Free], want)
			if d := int64(st[Free]) - int64(want); d < -int64(want)/100 || d > int64(want)/100 {
				t.Errorf("free pages %d differ from NR_FREE_PAGES %d by more than 1%%", st[Free], want)
			}
			all := scanAll(t, c, MaxLevel, nil).Stats()
			if all[Cache] == 0 || all[User] == 0 {
				t.Errorf("no cache or user pages at -d 31: %s", all.String())
			}
		})
	}
}
