package luks_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// synthLUKS1 is a LUKS1 phdr (no keyslots) for seeding.
func synthLUKS1() []byte {
	b := make([]byte, 4096)
	copy(b, "LUKS\xba\xbe")
	binary.BigEndian.PutUint16(b[6:], 1)
	copy(b[8:], "aes")
	copy(b[40:], "xts-plain64")
	copy(b[72:], "sha256")
	binary.BigEndian.PutUint32(b[104:], 4096)
	binary.BigEndian.PutUint32(b[108:], 64)
	binary.BigEndian.PutUint32(b[164:], 1000)
	copy(b[168:], synthUUID)
	return b
}

// cryptsetupSeeds returns real headers, cut after the metadata (Parse
// never reads keyslot areas), when cryptsetup is there; fuzzing works on
// the synthetic seeds without it.
func cryptsetupSeeds(f *testing.F) [][]byte {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		if _, err := os.Stat("/usr/sbin/cryptsetup"); err != nil {
			return nil
		}
	}
	var seeds [][]byte
	for _, o := range []lukstest.Options{
		{Version: 1},
		{SectorSize: 4096, Label: "seed"},
	} {
		path := f.TempDir() + "/img"
		lukstest.Format(f, path, 20<<20, o)
		img, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		n := 4096
		if o.Version != 1 {
			n = 2 * int(binary.BigEndian.Uint64(img[8:]))
		}
		seeds = append(seeds, img[:n])
	}
	return seeds
}

// exercise runs what a caller does with a parsed header; none of it may
// panic. VerifyKey is skipped for digests too costly to run per input:
// iterations up to 2^32-1 are valid.
func exercise(t *testing.T, h *luks.Header) {
	if h.Version != 1 && h.Version != 2 {
		t.Fatalf("version %d", h.Version)
	}
	if h.Digest.Iterations <= 2000 {
		_ = h.VerifyKey(synthKey)
	}
	for _, size := range []uint64{0, 1 << 20, 17 << 20, 1 << 40, ^uint64(0)} {
		tab, err := h.Table(size)
		if err != nil {
			continue
		}
		if tab.Length == 0 || (tab.Offset+tab.Length)*512 > size || tab.Length%uint64(tab.SectorSize/512) != 0 {
			t.Fatalf("Table(%d) = %+v for %+v", size, tab, h)
		}
		_ = tab.Line("/dev/x", "-")
	}
}

// FuzzParse feeds whole images: binary header damage, truncation, copy
// selection. Most mutations break the checksum; FuzzParseJSON reaches the
// metadata checks.
func FuzzParse(f *testing.F) {
	f.Add(synthImage(f, synthJSON()))
	f.Add(synthLUKS1())
	for _, s := range cryptsetupSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := luks.Parse(bytes.NewReader(data))
		if err != nil {
			if h != nil {
				t.Fatal("header with error")
			}
			return
		}
		exercise(t, h)
	})
}

// FuzzParseJSON wraps the input as the JSON area of two valid header
// copies (checksums right), so every input reaches the metadata checks.
func FuzzParseJSON(f *testing.F) {
	text, err := json.Marshal(synthJSON())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(text)
	for _, s := range cryptsetupSeeds(f) {
		if binary.BigEndian.Uint16(s[6:]) == 2 {
			area := s[4096:0x4000]
			f.Add(area[:bytes.IndexByte(area, 0)])
		}
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		if len(text) > 0x4000-4096 {
			return
		}
		img := append(synthCopy(text, copyParams{seqid: 1}), synthCopy(text, copyParams{seqid: 1, secondary: true})...)
		h, err := luks.Parse(bytes.NewReader(img))
		if err != nil {
			return
		}
		exercise(t, h)
	})
}
