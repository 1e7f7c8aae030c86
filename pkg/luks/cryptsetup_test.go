package luks_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// Tests against headers written by the real cryptsetup, checked against
// what cryptsetup's own luksDump says about them.

// dumpInfo is what luksDump prints about a volume.
type dumpInfo struct {
	version      int
	epoch        uint64
	metadataSize uint64
	uuid, label  string
	requirements string
	flags        string
	cipher       string
	offset       uint64 // bytes
	dynamic      bool
	sectorSize   int
	keyBits      int
	integrity    string
	segments     int
}

// luksDump runs cryptsetup luksDump and reads its text. Call it only on
// intact headers: on a damaged one cryptsetup may repair the image.
func luksDump(t *testing.T, path string) dumpInfo {
	t.Helper()
	out, err := exec.Command(lukstest.Cryptsetup(t), "luksDump", path).CombinedOutput()
	if err != nil {
		t.Fatalf("luksDump %s: %v\n%s", path, err, out)
	}
	var d dumpInfo
	var cipherName, cipherMode string
	section := ""
	num := func(s string) uint64 {
		n, err := strconv.ParseUint(strings.Fields(s)[0], 10, 64)
		if err != nil {
			t.Fatalf("luksDump: %q: %v", s, err)
		}
		return n
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") && v == "" {
			section = k
			continue
		}
		if section == "Data segments" && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "\t") {
			d.segments++
			continue
		}
		if section == "Data segments" && d.segments > 1 {
			continue // values below are segment 0's
		}
		switch {
		case k == "Version":
			d.version = int(num(v))
		case k == "Epoch":
			d.epoch = num(v)
		case k == "Metadata area":
			d.metadataSize = num(v)
		case k == "UUID":
			d.uuid = v
		case k == "Label" && v != "(no label)":
			d.label = v
		case k == "Requirements":
			d.requirements = v
		case k == "Flags" && v != "(no flags)":
			d.flags = v
		case k == "Cipher name":
			cipherName = v
		case k == "Cipher mode":
			cipherMode = v
		case k == "Payload offset":
			d.offset = num(v) * 512
			d.dynamic = true
			d.sectorSize = 512
		case k == "MK bits":
			d.keyBits = int(num(v))
		case section == "Data segments" && k == "offset":
			d.offset = num(v)
		case section == "Data segments" && k == "length":
			d.dynamic = v == "(whole device)"
		case section == "Data segments" && k == "cipher":
			d.cipher = v
		case section == "Data segments" && k == "sector":
			d.sectorSize = int(num(v))
		case section == "Data segments" && k == "integrity":
			d.integrity = v
		case section == "Keyslots" && k == "Key" && d.keyBits == 0:
			d.keyBits = int(num(v))
		}
	}
	if cipherName != "" {
		d.cipher = cipherName + "-" + cipherMode
		d.segments = 1
	}
	if d.version == 0 || d.uuid == "" || d.cipher == "" {
		t.Fatalf("luksDump output not understood: %+v\n%s", d, out)
	}
	return d
}

// expectLine is the dm table cryptsetup would load, from luksDump's
// numbers alone.
func (d dumpInfo) expectLine(devSize uint64) string {
	n := (devSize - d.offset) / uint64(d.sectorSize) * uint64(d.sectorSize) / 512
	s := fmt.Sprintf("0 %d crypt %s KEY 0 /dev/x %d", n, d.cipher, d.offset/512)
	if d.sectorSize != 512 {
		s += fmt.Sprintf(" 1 sector_size:%d", d.sectorSize)
	}
	return s
}

func parseFile(t *testing.T, path string) (*luks.Header, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return luks.Parse(f)
}

// damage xors bytes of the image at off.
func damage(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0x5a
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestCryptsetupFormats(t *testing.T) {
	lukstest.Cryptsetup(t)
	const size = 20 << 20
	type opts = lukstest.Options
	cases := []struct {
		name          string
		o             opts
		after         func(t *testing.T, path string, d dumpInfo)
		wantSecondary bool
	}{
		{"luks1 aes-xts-plain64 256", opts{Version: 1, KeyBits: 256}, nil, false},
		{"luks1 aes-xts-plain64 512", opts{Version: 1, KeyBits: 512}, nil, false},
		{"luks1 aes-cbc-essiv:sha256", opts{Version: 1, Cipher: "aes-cbc-essiv:sha256", KeyBits: 256}, nil, false},
		{"luks1 sha1 digest", opts{Version: 1, KeyBits: 256, Args: []string{"--hash", "sha1"}}, nil, false},
		{"luks1 sha512 digest", opts{Version: 1, KeyBits: 512, Args: []string{"--hash", "sha512"}}, nil, false},
		{"luks2 sector 512 key 512", opts{SectorSize: 512, KeyBits: 512}, nil, false},
		{"luks2 sector 4096 key 512", opts{SectorSize: 4096, KeyBits: 512}, nil, false},
		{"luks2 sector 4096 key 256", opts{SectorSize: 4096, KeyBits: 256}, nil, false},
		{"luks2 sector 512 key 256 label", opts{KeyBits: 256, Label: "ukdump data"}, nil, false},
		{"luks2 sha512 digest", opts{Args: []string{"--hash", "sha512"}}, nil, false},
		{"luks2 sha1 digest", opts{Args: []string{"--hash", "sha1"}}, nil, false},
		{"luks2 aes-cbc-essiv", opts{Cipher: "aes-cbc-essiv:sha256", KeyBits: 256}, nil, false},
		{"luks2 64k metadata", opts{Args: []string{"--luks2-metadata-size", "64k"}}, nil, false},
		{"luks2 argon2id, keyslots wiped", opts{PBKDF: "argon2id-min", SectorSize: 4096},
			func(t *testing.T, path string, d dumpInfo) {
				// Without keyslot material no KDF could give the key:
				// VerifyKey and Table must not need any.
				damage(t, path, int64(2*d.metadataSize), int(d.offset-2*d.metadataSize))
			}, false},
		{"luks2 primary JSON damaged", opts{}, func(t *testing.T, path string, d dumpInfo) {
			damage(t, path, 4096+10, 1)
		}, true},
		{"luks2 primary binary header damaged", opts{}, func(t *testing.T, path string, d dumpInfo) {
			damage(t, path, 24, 1) // label byte
		}, true},
		{"luks2 64k, primary magic wiped", opts{Args: []string{"--luks2-metadata-size", "64k"}},
			func(t *testing.T, path string, d dumpInfo) { damage(t, path, 0, 6) }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := t.TempDir() + "/img"
			key, _ := lukstest.Format(t, path, size, c.o)
			d := luksDump(t, path)
			if c.after != nil {
				c.after(t, path, d)
			}
			h, err := parseFile(t, path)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if h.Version != d.version || h.UUID != d.uuid || h.Label != d.label || h.Cipher != d.cipher ||
				h.KeySize*8 != d.keyBits || h.Offset != d.offset || h.Dynamic != d.dynamic ||
				h.SectorSize != d.sectorSize || h.Segments != d.segments {
				t.Errorf("Parse = %+v\nluksDump = %+v", h, d)
			}
			if h.Version == 2 && (h.Seqid != d.epoch || h.HeaderSize != d.metadataSize) {
				t.Errorf("seqid %d, hdr_size %d; luksDump: epoch %d, metadata %d", h.Seqid, h.HeaderSize, d.epoch, d.metadataSize)
			}
			if h.Secondary != c.wantSecondary {
				t.Errorf("Secondary = %v, want %v", h.Secondary, c.wantSecondary)
			}
			if err := h.VerifyKey(key); err != nil {
				t.Errorf("VerifyKey(right key): %v", err)
			}
			bad := bytes.Clone(key)
			bad[len(bad)-1] ^= 1
			if err := h.VerifyKey(bad); !errors.Is(err, luks.ErrWrongKey) {
				t.Errorf("VerifyKey(flipped bit) = %v, want ErrWrongKey", err)
			}
			if err := h.VerifyKey(key[:len(key)-1]); !errors.Is(err, luks.ErrWrongKey) {
				t.Errorf("VerifyKey(short key) = %v, want ErrWrongKey", err)
			}
			for _, devSize := range []uint64{size, size + 4096 + 1536} {
				tab, err := h.Table(devSize)
				if err != nil {
					t.Fatalf("Table(%d): %v", devSize, err)
				}
				if got, want := tab.Line("/dev/x", "KEY"), d.expectLine(devSize); got != want {
					t.Errorf("Table(%d).Line =\n %s\nwant\n %s", devSize, got, want)
				}
			}
		})
	}
}

func TestCryptsetupReencryptInProgress(t *testing.T) {
	cs := lukstest.Cryptsetup(t)
	path := t.TempDir() + "/img"
	key, _ := lukstest.Format(t, path, 20<<20, lukstest.Options{})
	cmd := exec.Command(cs, "reencrypt", "--init-only", "--batch-mode", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file", "-", path)
	cmd.Stdin = strings.NewReader(lukstest.DefaultPassphrase)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reencrypt --init-only: %v\n%s", err, out)
	}
	d := luksDump(t, path)
	h, err := parseFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(h.Requirements, " ") != d.requirements || d.requirements == "" || h.Segments != d.segments {
		t.Errorf("requirements %q, %d segments; luksDump: %q, %d", h.Requirements, h.Segments, d.requirements, d.segments)
	}
	// Segment 0 is still the old key's: the digest check must pass...
	if err := h.VerifyKey(key); err != nil {
		t.Errorf("VerifyKey: %v", err)
	}
	// ...but no single table maps a volume mid-reencryption.
	_, err = h.Table(20 << 20)
	if !errors.Is(err, luks.ErrUnsupported) || !strings.Contains(err.Error(), d.requirements) {
		t.Errorf("Table = %v, want ErrUnsupported naming %q", err, d.requirements)
	}
}

// rewriteJSON edits the LUKS2 metadata of both header copies in place and
// fixes their checksums: how the tests make headers cryptsetup can read
// but cannot write on this host (integrity needs device-mapper to format).
func rewriteJSON(t *testing.T, path string, edit func(m map[string]any)) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hdrSize := binary.BigEndian.Uint64(img[8:])
	for _, off := range []uint64{0, hdrSize} {
		c := img[off : off+hdrSize]
		if string(c[72:78]) != "sha256" {
			t.Fatalf("csum_alg %q", c[72:104])
		}
		area := c[4096:]
		dec := json.NewDecoder(bytes.NewReader(area[:bytes.IndexByte(area, 0)]))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		text, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		clear(area)
		copy(area, text)
		clear(c[448 : 448+64])
		sum := sha256.Sum256(c)
		copy(c[448:], sum[:])
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}

func segment0(m map[string]any) map[string]any {
	return m["segments"].(map[string]any)["0"].(map[string]any)
}

// TestCryptsetupCrafted edits real headers into shapes cryptsetup reads
// (luksDump must accept each) but Table must map differently or refuse.
func TestCryptsetupCrafted(t *testing.T) {
	lukstest.Cryptsetup(t)
	const size = 20 << 20
	cases := []struct {
		name   string
		edit   func(m map[string]any)
		line   string // wanted Line("/dev/x", "KEY"), or "" for an error
		errMsg string
	}{
		{"integrity", func(m map[string]any) {
			s := segment0(m)
			s["encryption"] = "aes-xts-random"
			s["integrity"] = map[string]any{"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"}
		}, "", `integrity "hmac(sha256)"`},
		{"unknown segment type", func(m map[string]any) {
			segment0(m)["type"] = "detached-thing"
		}, "", `segment type "detached-thing"`},
		{"two segments", func(m map[string]any) {
			s0 := segment0(m)
			s1 := map[string]any{}
			for k, v := range s0 {
				s1[k] = v
			}
			s0["size"] = "1048576"
			s1["offset"] = "17825792"
			s1["iv_tweak"] = "2048"
			m["segments"].(map[string]any)["1"] = s1
			m["digests"].(map[string]any)["0"].(map[string]any)["segments"] = []any{"0", "1"}
		}, "", "2 segments"},
		{"persistent flags", func(m map[string]any) {
			m["config"].(map[string]any)["flags"] = []any{"no-read-workqueue", "allow-discards", "no-journal"}
		}, "0 8192 crypt aes-xts-plain64 KEY 0 /dev/x 32768 3 allow_discards no_read_workqueue sector_size:4096", ""},
		{"fixed size", func(m map[string]any) {
			segment0(m)["size"] = "1048576"
		}, "0 2048 crypt aes-xts-plain64 KEY 0 /dev/x 32768 1 sector_size:4096", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := t.TempDir() + "/img"
			key, _ := lukstest.Format(t, path, size, lukstest.Options{SectorSize: 4096})
			rewriteJSON(t, path, c.edit)
			luksDump(t, path) // cryptsetup must still take the header
			h, err := parseFile(t, path)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := h.VerifyKey(key); err != nil {
				t.Errorf("VerifyKey: %v", err)
			}
			tab, err := h.Table(size)
			if c.line != "" {
				if err != nil {
					t.Fatalf("Table: %v", err)
				}
				if got := tab.Line("/dev/x", "KEY"); got != c.line {
					t.Errorf("Line =\n %s\nwant\n %s", got, c.line)
				}
				return
			}
			if !errors.Is(err, luks.ErrUnsupported) || !strings.Contains(err.Error(), c.errMsg) {
				t.Errorf("Table = %+v, %v; want ErrUnsupported with %q", tab, err, c.errMsg)
			}
		})
	}
}

func TestCryptsetupBothCopiesDamaged(t *testing.T) {
	lukstest.Cryptsetup(t)
	path := t.TempDir() + "/img"
	lukstest.Format(t, path, 20<<20, lukstest.Options{})
	damage(t, path, 4096+10, 1)
	damage(t, path, 0x4000+4096+10, 1)
	h, err := parseFile(t, path)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("Parse = %+v, %v; want a checksum error", h, err)
	}
}
