package vmcore_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/internal/synth"
)

// TestOpenMapped reads a vmcore file through mappings and with pread: the
// same bytes, the same scan; MapPages gives each whole page's bytes, cuts
// runs where a window ends, and declines pages it cannot map whole.
func TestOpenMapped(t *testing.T) {
	k := synth.New(synth.Layout61)
	name := filepath.Join(t.TempDir(), "vmcore")
	if err := os.WriteFile(name, k.ELF(), 0o600); err != nil {
		t.Fatal(err)
	}
	plain, err := vmcore.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	mapped, err := vmcore.OpenMapped(name)
	if err != nil {
		t.Fatal(err)
	}
	if plain.MaxPFN() <= vmcore.MapWindow/4096 {
		t.Fatalf("the synthetic vmcore (%d pages) fits in one window", plain.MaxPFN())
	}
	scan := func(c *vmcore.Core) (vmcore.Stats, []byte) {
		s, err := c.NewScanner(31, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ch vmcore.Chunk
		var dump []byte
		for {
			ok, err := s.Next(&ch)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return s.Stats(), dump
			}
			dump = append(dump, ch.Dump...)
		}
	}
	ps, pd := scan(plain)
	ms, md := scan(mapped)
	if ps != ms || !bytes.Equal(pd, md) {
		t.Errorf("scan through mappings differs: %v, want %v", ms, ps)
	}
	want, got := make([]byte, 4096), make([]byte, 4096)
	var windows []*vmcore.Window
	mappedPages := 0
	for pfn := uint64(0); pfn < plain.MaxPFN(); pfn++ {
		perr := plain.ReadPage(pfn, want)
		merr := mapped.ReadPage(pfn, got)
		if (perr == nil) != (merr == nil) || perr == nil && !bytes.Equal(want, got) {
			t.Fatalf("page %#x: mapped read %v, pread %v", pfn, merr, perr)
		}
		data, w, ok := mapped.MapPages(pfn, 1)
		if !ok {
			continue
		}
		mappedPages++
		if perr != nil || !bytes.Equal(data, want) {
			t.Fatalf("MapPages(%#x): differs from ReadPage (%v)", pfn, perr)
		}
		windows = append(windows, w)
	}
	if mappedPages == 0 {
		t.Fatal("MapPages mapped no page")
	}
	// A run that crosses the end of a window: MapPages gives the pages
	// up to it, and the rest from the next window.
	split := false
	for pfn := uint64(0); pfn < plain.MaxPFN() && !split; pfn++ {
		data, w, ok := mapped.MapPages(pfn, 64)
		if !ok {
			continue
		}
		windows = append(windows, w)
		k := len(data) / 4096
		if len(data)%4096 != 0 || k == 0 || k > 64 {
			t.Fatalf("MapPages(%#x, 64): %d bytes", pfn, len(data))
		}
		if k == 64 {
			continue
		}
		rest, w2, ok := mapped.MapPages(pfn+uint64(k), 64-k)
		if !ok {
			continue // the segment ends there
		}
		windows = append(windows, w2)
		if w2 == w {
			t.Fatalf("the rest of a run cut at a window's end from the same window")
		}
		want := make([]byte, 64*4096)
		n := k + len(rest)/4096
		if err := plain.ReadPages(pfn, n, want[:n*4096]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(append(bytes.Clone(data), rest...), want[:n*4096]) {
			t.Fatalf("run of %d pages at %#x cut after %d: differs from pread", n, pfn, k)
		}
		split = true
	}
	if !split {
		t.Error("no run of MapPages crossed a window's end")
	}
	if _, _, ok := mapped.MapPages(0x780, 1); ok { // memsz > filesz: not in the file
		t.Error("MapPages mapped a page of a segment's zero-filled tail")
	}
	if _, _, ok := mapped.MapPages(0x850, 1); ok {
		t.Error("MapPages mapped a hole")
	}
	// Released after Close, the windows are unmapped then.
	if err := mapped.Close(); err != nil {
		t.Fatal(err)
	}
	for _, w := range windows {
		w.Release()
	}
	if _, _, ok := plain.MapPages(0, 1); ok {
		t.Error("MapPages of a core opened with Open")
	}
}
