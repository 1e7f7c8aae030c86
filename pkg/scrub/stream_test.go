package scrub

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

const testPS = 4096

// mem is physical memory of a few random pages, with the bytes a correct
// scrub leaves (want) kept beside them.
type mem struct {
	pages, want map[uint64][]byte
}

func newMem(rng *rand.Rand, pfns ...uint64) *mem {
	m := &mem{pages: map[uint64][]byte{}, want: map[uint64][]byte{}}
	for _, p := range pfns {
		m.pages[p] = randomKey(rng, testPS)
		m.want[p] = bytes.Clone(m.pages[p])
	}
	return m
}

// plant writes b at byte off of pfn, on into the pages after it; scrubbed
// says which of its bytes the scrub must zero (all when nil).
func (m *mem) plant(pfn uint64, off int, b []byte, scrubbed func(i int) bool) {
	for i, v := range b {
		p, o := pfn+uint64((off+i)/testPS), (off+i)%testPS
		m.pages[p][o] = v
		m.want[p][o] = v
		if scrubbed == nil || scrubbed(i) {
			m.want[p][o] = 0
		}
	}
}

// op is one step of a dump: a page written, or (missing) one recorded as
// missing, which breaks the run as the collector's WriteMissing does.
type op struct {
	pfn     uint64
	missing bool
}

func pagesOf(pfns ...uint64) []op {
	ops := make([]op, len(pfns))
	for i, p := range pfns {
		ops[i] = op{pfn: p}
	}
	return ops
}

// dump runs the pages through a Stream, each from a buffer reused as the
// collector reuses its own, and returns what was emitted.
func dump(t *testing.T, s *Scrubber, m *mem, ops []op) (map[uint64][]byte, Counts) {
	t.Helper()
	out := map[uint64][]byte{}
	var order []uint64
	st, err := s.NewStream(testPS, func(pfn uint64, page []byte) error {
		out[pfn] = bytes.Clone(page)
		order = append(order, pfn)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, testPS)
	for _, o := range ops {
		if o.missing {
			if err := st.Flush(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		copy(buf, m.pages[o.pfn])
		if err := st.Page(o.pfn, buf); err != nil {
			t.Fatal(err)
		}
		fill(rand.New(rand.NewPCG(o.pfn, 0)), buf) // the caller reuses its buffer
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(order) {
		t.Errorf("pages emitted out of order: %v", order)
	}
	return out, st.Counts()
}

// check compares what was emitted with what the scrub should leave, byte
// for byte.
func (m *mem) check(t *testing.T, out map[uint64][]byte) {
	t.Helper()
	for pfn, want := range m.want {
		got, ok := out[pfn]
		if !ok {
			continue // not in the dump
		}
		if i := firstDiff(got, want); i >= 0 {
			t.Errorf("pfn %d byte %d: got %#02x, want %#02x (before scrubbing %#02x)", pfn, i, got[i], want[i], m.pages[pfn][i])
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// twoVolumes is the benchmark's and several tests' secret: two volumes,
// aes-xts-plain64 with a 512-bit key and aes-cbc-essiv:sha256.
func twoVolumes(rng *rand.Rand) []Volume {
	return []Volume{
		{Cipher: "aes-xts-plain64", Key: randomKey(rng, 64)},
		{Cipher: "aes-cbc-essiv:sha256", Key: randomKey(rng, 32)},
	}
}

// TestStreamScrubsEverything plants every pattern of two volumes many times
// at random offsets of 64 consecutive pages, a third of them across a page
// boundary, and checks that exactly the planted bytes come out zeroed and
// each occurrence is counted once under its kind.
func TestStreamScrubsEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	s, err := New(twoVolumes(rng))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	pfns := make([]uint64, 64)
	for i := range pfns {
		pfns[i] = 100 + uint64(i)
	}
	m := newMem(rng, pfns...)
	var want Counts
	used := make([]bool, len(pfns)*testPS) // planted bytes, with a gap around each
	for range 300 {
		p := s.pats[rng.IntN(len(s.pats))]
		var at int
		if rng.IntN(3) == 0 {
			at = (1+rng.IntN(len(pfns)-1))*testPS - 1 - rng.IntN(len(p.b)-1)
		} else {
			at = rng.IntN(len(used) - len(p.b))
		}
		lo, hi := max(0, at-8), min(len(used), at+len(p.b)+8)
		if slices.Contains(used[lo:hi], true) {
			continue
		}
		for i := lo; i < hi; i++ {
			used[i] = true
		}
		m.plant(pfns[0]+uint64(at/testPS), at%testPS, p.b, nil)
		want[p.kind]++
	}
	out, got := dump(t, s, m, pagesOf(pfns...))
	m.check(t, out)
	if got != want {
		t.Errorf("counts %s, want %s", got, want)
	}
	t.Logf("planted and scrubbed: %s", got)
}

// strideVolumes are an aes-xts-plain64 volume with a 256-bit key (16-byte
// halves: the scan tests a word every 8 bytes) and one with a 512-bit key
// (nothing shorter than 32 bytes: a word every 16 bytes).
func strideVolumes(rng *rand.Rand) map[int][]Volume {
	return map[int][]Volume{
		8:  {{Cipher: "aes-xts-plain64", Key: randomKey(rng, 32)}},
		16: {{Cipher: "aes-xts-plain64", Key: randomKey(rng, 64)}},
	}
}

// TestStreamEveryCrossing moves each pattern across the boundary of two
// neighbouring pages, one byte at a time, at both strides.
func TestStreamEveryCrossing(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for stride, vols := range strideVolumes(rng) {
		s, err := New(vols)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Wipe()
		if s.stride != stride {
			t.Fatalf("stride %d, want %d", s.stride, stride)
		}
		for _, p := range s.pats {
			for k := 1; k < len(p.b); k++ {
				m := newMem(rng, 10, 11)
				m.plant(10, testPS-k, p.b, nil)
				out, got := dump(t, s, m, pagesOf(10, 11))
				m.check(t, out)
				var want Counts
				want[p.kind] = 1
				if got != want {
					t.Fatalf("stride %d: %s with %d bytes in the first page: counts %s, want %s", stride, p.kind, k, got, want)
				}
			}
		}
	}
}

// TestStreamOpenEdges cuts each pattern at the end of a page whose
// neighbour is not in the dump, and at the start of one whose neighbour is
// not, keeping k bytes: the part is zeroed (and counted) when at least a
// word long, and stays when shorter, at both strides (at stride 16, parts
// of 8 to 15 bytes at a page's end have no word the scan tests: a last
// word is tested for them).
func TestStreamOpenEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for stride, vols := range strideVolumes(rng) {
		s, err := New(vols)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Wipe()
		for _, p := range s.pats {
			for k := 1; k < min(len(p.b), 3*wordLen); k++ {
				m := newMem(rng, 10, 12)
				cut := func(i int) bool { return k >= wordLen }
				m.plant(10, testPS-k, p.b[:k], cut)
				m.plant(12, 0, p.b[len(p.b)-k:], cut)
				out, got := dump(t, s, m, pagesOf(10, 12))
				m.check(t, out)
				// Each part is counted once: as a partial one, or as the
				// whole pattern it also is (a schedule begins with its
				// key, a key with its first half).
				want := uint64(0)
				if k >= wordLen {
					want = 2
				}
				if got.Total() != want {
					t.Fatalf("stride %d: %s cut to %d bytes: counts %s, want %d in all", stride, p.kind, k, got, want)
				}
			}
		}
	}
}

// TestStreamNonAdjacent: pages that are not neighbours in memory (5, 7, 9),
// or that a page recorded as missing separates (20, 22), never join into
// one occurrence. Each part of a cut pattern at least a word long is
// scrubbed as a partial one; a shorter part stays.
func TestStreamNonAdjacent(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	s, err := New([]Volume{{Cipher: "aes-xts-plain64", Key: randomKey(rng, 64)}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	enc := s.pats[3].b // the first half's schedule, 240 bytes
	if s.pats[3].kind != Enc || len(enc) != 240 {
		t.Fatalf("pattern 3 is a %d-byte %s", len(enc), s.pats[3].kind)
	}
	m := newMem(rng, 5, 7, 9, 20, 21, 22)
	l := len(enc)
	// enc[:l-4] ends page 5, its last 4 bytes begin page 7: the 4 stay.
	copy(m.pages[5][testPS-(l-4):], enc)
	clear(m.want[5][testPS-(l-4):])
	copy(m.pages[7], enc[l-4:])
	copy(m.want[7], enc[l-4:])
	// enc[:4] ends page 7 and stays; the rest begins page 9.
	copy(m.pages[7][testPS-4:], enc[:4])
	copy(m.want[7][testPS-4:], enc[:4])
	copy(m.pages[9], enc[4:])
	clear(m.want[9][:l-4])
	// Into 21, which is recorded missing, and out of it into 22: the
	// parts in 20 and 22 are scrubbed.
	m.plant(20, testPS-100, enc, nil)
	m.plant(21, testPS-50, enc, nil)
	out, got := dump(t, s, m, []op{{pfn: 5}, {pfn: 7}, {pfn: 9}, {pfn: 20}, {pfn: 21, missing: true}, {pfn: 22}})
	m.check(t, out)
	if _, ok := out[21]; ok {
		t.Error("the missing page was emitted")
	}
	if want := (Counts{Partial: 4}); got != want {
		t.Errorf("counts %s, want %s", got, want)
	}
	// Only the missing page's break: joined when 20 and 21 follow each other.
	m = newMem(rng, 20, 21)
	m.plant(20, testPS-100, enc, nil)
	out, got = dump(t, s, m, pagesOf(20, 21))
	m.check(t, out)
	if want := (Counts{Enc: 1}); got != want {
		t.Errorf("neighbours: counts %s, want %s", got, want)
	}
}

// TestStreamOverlapping: the first XTS half followed by the second half's
// schedule (which begins with that half) holds two overlapping
// occurrences, the key and the schedule. Both are found in the bytes as
// read and zeroed whole, wherever the page boundary falls, the schedule
// included when it starts in the next page.
func TestStreamOverlapping(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	key := randomKey(rng, 64)
	s, err := New([]Volume{{Cipher: "aes-xts-plain64", Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	enc2 := s.pats[5].b
	if s.pats[5].kind != Enc || !bytes.Equal(enc2[:32], key[32:]) {
		t.Fatal("pattern 5 is not the second half's schedule")
	}
	both := append(bytes.Clone(key[:32]), enc2...)
	for _, at := range []int{1000, testPS - 40, testPS - 20, testPS - 33} {
		m := newMem(rng, 30, 31)
		m.plant(30, at, both, nil)
		out, got := dump(t, s, m, pagesOf(30, 31))
		m.check(t, out)
		if want := (Counts{Key: 1, Enc: 1}); got != want {
			t.Errorf("at %d: counts %s, want %s", at, got, want)
		}
	}
}

// TestStreamWithoutPatterns: a Scrubber of no volumes changes no byte.
func TestStreamWithoutPatterns(t *testing.T) {
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newMem(rand.New(rand.NewPCG(19, 20)), 1, 2, 3, 8)
	out, got := dump(t, s, m, pagesOf(1, 2, 3, 8))
	m.check(t, out)
	if len(out) != 4 || got != (Counts{}) {
		t.Errorf("%d pages out, counts %s", len(out), got)
	}
}

func TestStreamErrors(t *testing.T) {
	s, err := New(twoVolumes(rand.New(rand.NewPCG(21, 22))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	if _, err := s.NewStream(128, nil); err == nil {
		t.Error("pages shorter than a schedule accepted")
	}
	st, err := s.NewStream(testPS, func(uint64, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Page(5, make([]byte, 100)); err == nil {
		t.Error("a short page accepted")
	}
	if err := st.Page(5, make([]byte, testPS)); err != nil || !st.Holding() {
		t.Fatalf("Page = %v, holding %v", err, st.Holding())
	}
	if err := st.Page(5, make([]byte, testPS)); err == nil {
		t.Error("the same pfn twice accepted")
	}
}
