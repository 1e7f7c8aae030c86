package e2e

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/scrub"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// keyHits counts, per kind, the occurrences in the dump of each byte
// string derived from the volumes' keys (keys, halves, salts, AES
// schedules), searching page contents and across the boundary of pages
// that follow each other in memory.
func keyHits(t *testing.T, vmcore string, vols ...luksVolume) map[scrub.Kind]int {
	t.Helper()
	var secrets []scrub.Secret
	for _, v := range vols {
		s, err := scrub.Derive(scrub.Volume{Cipher: v.Header.Cipher, Key: v.Key})
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s...)
	}
	longest := 0
	for _, s := range secrets {
		longest = max(longest, len(s.Bytes))
	}
	pages := openPages(t, vmcore)
	ps := pages.pageSize
	hits := map[scrub.Kind]int{}
	// window holds the tail of the previous page (when it is pfn-1) and
	// the page; a match must end in the page, so none is counted twice.
	window := make([]byte, 0, longest+ps)
	page := make([]byte, ps)
	prev := ^uint64(0)
	for pfn := uint64(0); pfn < pages.maxPFN; pfn++ {
		if ok, err := pages.read(pfn, page); err != nil {
			t.Fatalf("pfn %#x: %v", pfn, err)
		} else if !ok {
			continue
		}
		tail := 0
		if prev == pfn-1 && len(window) > 0 {
			tail = min(longest-1, len(window))
			copy(window[:tail], window[len(window)-tail:])
		}
		window = append(window[:tail], page...)
		for _, s := range secrets {
			for off := 0; ; {
				i := bytes.Index(window[off:], s.Bytes)
				if i < 0 {
					break
				}
				if off+i+len(s.Bytes) > tail {
					hits[s.Kind]++
				}
				off += i + 1
			}
		}
		prev = pfn
	}
	return hits
}

// dumpPages reads the pages of a kdump-compressed dump or an ELF core.
type dumpPages struct {
	pageSize int
	maxPFN   uint64
	// read fills page and reports true for a pfn the dump holds.
	read func(pfn uint64, page []byte) (bool, error)
}

func openPages(t *testing.T, name string) dumpPages {
	t.Helper()
	kdump, err := collector.IsKdump(name)
	if err != nil {
		t.Fatal(err)
	}
	if kdump {
		d, err := diskdump.OpenFile(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return dumpPages{d.Header().PageSize, d.MaxPFN(), func(pfn uint64, page []byte) (bool, error) {
			if !d.Dumpable(pfn) {
				return false, nil
			}
			return true, d.ReadPage(pfn, page)
		}}
	}
	c, err := vmcore.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return dumpPages{c.PageSize(), c.MaxPFN(), func(pfn uint64, page []byte) (bool, error) {
		err := c.ReadPage(pfn, page)
		if errors.Is(err, vmcore.ErrNotRAM) {
			return false, nil
		}
		return err == nil, err
	}}
}

var scrubLine = regexp.MustCompile(`kdumpinit: scrubbed from the dump: key (\d+), half (\d+), salt (\d+), enc (\d+), dec (\d+), partial (\d+)`)

// checkScrubbed: with scrub_keys (the default) the crash kernel found key
// material (dm-crypt's copy at least) and none is left in the dump; with
// scrub_keys no, the same search finds it: proof the search works.
func checkScrubbed(t *testing.T, dir, crashConsole, vmcore string, scrubbed bool, vols ...luksVolume) {
	t.Helper()
	hits := keyHits(t, vmcore, vols...)
	report, _ := os.ReadFile(filepath.Join(filepath.Dir(vmcore), "scrub.txt"))
	if !scrubbed {
		if hits[scrub.Key] == 0 || hits[scrub.Enc] == 0 {
			t.Errorf("scrub_keys no, yet the dump holds no key (%v): the search cannot be trusted", hits)
		}
		if !bytes.Contains(report, []byte("scrub_keys no\n")) {
			t.Errorf("scrub.txt: %q", report)
		}
		t.Logf("scrub_keys no: key material in the dump: %v", hits)
		return
	}
	for kind, n := range hits {
		if n > 0 {
			t.Errorf("%d occurrences of %v left in the dump", n, kind)
		}
	}
	m := scrubLine.FindStringSubmatch(crashConsole)
	if m == nil {
		t.Fatal("the crash kernel did not report what it scrubbed")
	}
	key, _ := strconv.Atoi(m[1])
	enc, _ := strconv.Atoi(m[4])
	if key < 1 || enc < 1 {
		t.Errorf("scrubbed %s: want at least dm-crypt's key and one schedule", m[0])
	}
	if !bytes.Contains(report, []byte("key "+m[1]+"\n")) || !bytes.Contains(report, []byte("enc "+m[4]+"\n")) {
		t.Errorf("scrub.txt disagrees with the console (%s):\n%s", m[0], report)
	}
	os.WriteFile(filepath.Join(dir, "scrubbed.txt"), []byte(m[0]+"\n"), 0o644)
}
