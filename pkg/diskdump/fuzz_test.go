package diskdump

import (
	"bytes"
	"testing"

	"github.com/ukdump/ukdump/pkg/vmcore"
)

// smallDump returns a complete small dump (512-byte pages) for seeds.
func smallDump(t testing.TB, c Compression) []byte {
	s := newSynth(40)
	s.ps = 512
	var mf memFile
	w, err := NewWriter(&mf, s.header(), Options{Compression: c})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, &s.bm, s.ps, func(pfn uint64, b []byte) error { copy(b, s.page(pfn)); return nil })
	return mf.b
}

func FuzzOpen(f *testing.F) {
	for _, c := range []Compression{None, Zlib, LZO, Snappy, Zstd} {
		f.Add(smallDump(f, c))
	}
	f.Add([]byte(signature))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		// Everything Open keeps is bounded by the file size.
		if int64(len(d.dump)+len(d.ram)+len(d.h.Notes)+len(d.vmci)) > 4*int64(len(data)) ||
			uint64(len(d.sect)) > uint64(len(data))/64+2 {
			t.Fatalf("allocations exceed the file size %d", len(data))
		}
		_, _ = ParseNotes(d.Notes())
		_, _ = vmcore.ParseVMCOREINFO(d.VMCOREINFO())
		buf := make([]byte, d.Header().PageSize)
		// Bound the work: a tiny compressed page can expand to 1 MiB.
		budget := 8 << 20
		for pfn := uint64(0); pfn < min(d.MaxPFN()+8, 1<<14) && budget > 0; pfn++ {
			if d.Dumpable(pfn) {
				budget -= len(buf)
			}
			err := d.ReadPage(pfn, buf)
			if err == nil && !d.Dumpable(pfn) {
				t.Fatalf("pfn %#x read but not dumpable", pfn)
			}
		}
	})
}

func FuzzLZO(f *testing.F) {
	f.Add([]byte{0x11, 0, 0})
	f.Add([]byte{0x15, 'a', 'b', 'c', 'd', 0x20, 0x03, 0, 0x11, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := make([]byte, 4096)
		n, _ := lzo1xDecompress(dst, data)
		if n < 0 || n > len(dst) {
			t.Fatalf("n = %d", n)
		}
	})
}

func TestLZOKnownStreams(t *testing.T) {
	dst := make([]byte, 64)
	// 4 literals "abcd", then a 2-byte-distance copy... built by hand:
	// 0x15 = 21-17 = 4 literals; 0x20|3 = M3 length 2+3=5 at distance 4.
	n, err := lzo1xDecompress(dst, []byte{0x15, 'a', 'b', 'c', 'd', 0x23, 0x0c, 0x00, 0x11, 0, 0})
	if err != nil || string(dst[:n]) != "abcdabcda" {
		t.Fatalf("got %q, %v", dst[:n], err)
	}
	if _, err := lzo1xDecompress(dst, []byte{0x15, 'a'}); err == nil {
		t.Fatal("truncated stream accepted")
	}
}

// FuzzLZORoundTrip: whatever the encoder emits, the decoder restores, with
// one encoder reused (its table holds the earlier inputs' positions) and
// with its table base about to wrap.
func FuzzLZORoundTrip(f *testing.F) {
	f.Add([]byte("abcabcabcabcabcabcabcabc"), uint8(3))
	f.Add(bytes.Repeat([]byte{0}, 5000), uint8(0))
	f.Add([]byte("0123456789abcdef0123456789ABCDEF"), uint8(200))
	var reused lzoEncoder
	f.Fuzz(func(t *testing.T, data []byte, rep uint8) {
		// Make longer, repetitive inputs from the fuzz data.
		src := bytes.Repeat(data, int(rep%8)+1)
		wrap := lzoEncoder{base: lzoMaxBase - len(src)/2}
		for i, e := range []*lzoEncoder{new(lzoEncoder), &reused, &reused, &wrap, &wrap} {
			out := e.encode(nil, src, lzoMaxOut(len(src)))
			if out == nil {
				t.Fatalf("%d bytes: no output under the worst-case bound", len(src))
			}
			dst := make([]byte, len(src))
			n, err := lzo1xDecompress(dst, out)
			if err != nil || n != len(src) || !bytes.Equal(dst, src) {
				t.Fatalf("encoder %d: round trip of %d bytes: n=%d err=%v", i, len(src), n, err)
			}
			// The reused encoder sees a different input next time.
			src = append(src[:len(src):len(src)], byte(i))
		}
	})
}
