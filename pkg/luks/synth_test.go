package luks_test

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash"
	"os"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/luks"
)

// Synthetic headers, written here from the LUKS2 on-disk format rather
// than by cryptsetup, so that parsing rules and hostile input are tested
// on every machine, and so fuzzing has inputs whose checksums are right.

const synthUUID = "11111111-2222-4333-8444-555555555555"

// synthKey is the volume key of synthJSON's digest.
var synthKey = bytes.Repeat([]byte{0x42}, 64)

// synthJSON returns a minimal valid LUKS2 metadata object for a 16 KiB
// header: one aes-xts-plain64 segment at 16 MiB, one keyslot of a 64-byte
// key, a PBKDF2-SHA256 digest of synthKey.
func synthJSON() map[string]any {
	salt := bytes.Repeat([]byte{7}, 32)
	digest, err := pbkdf2.Key(sha256.New, string(synthKey), salt, 1000, 32)
	if err != nil {
		panic(err)
	}
	return map[string]any{
		"keyslots": map[string]any{"0": map[string]any{"type": "luks2", "key_size": 64}},
		"tokens":   map[string]any{},
		"segments": map[string]any{"0": map[string]any{
			"type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0",
			"encryption": "aes-xts-plain64", "sector_size": 512,
		}},
		"digests": map[string]any{"0": map[string]any{
			"type": "pbkdf2", "keyslots": []any{"0"}, "segments": []any{"0"}, "hash": "sha256",
			"iterations": 1000, "salt": base64.StdEncoding.EncodeToString(salt),
			"digest": base64.StdEncoding.EncodeToString(digest),
		}},
		"config": map[string]any{"json_size": "12288", "keyslots_size": "16744448"},
	}
}

// copyParams are the binary header fields of one synthetic copy.
type copyParams struct {
	hdrSize   uint64
	seqid     uint64
	secondary bool
	label     string
	csumAlg   string
	uuid      string
}

// synthCopy returns one LUKS2 header copy (binary header and JSON area,
// hdrSize bytes) holding text, with a correct checksum.
func synthCopy(text []byte, p copyParams) []byte {
	if p.hdrSize == 0 {
		p.hdrSize = 0x4000
	}
	if p.csumAlg == "" {
		p.csumAlg = "sha256"
	}
	if p.uuid == "" {
		p.uuid = synthUUID
	}
	b := make([]byte, p.hdrSize)
	copy(b, "LUKS\xba\xbe")
	off := uint64(0)
	if p.secondary {
		copy(b, "SKUL\xba\xbe")
		off = p.hdrSize
	}
	binary.BigEndian.PutUint16(b[6:], 2)
	binary.BigEndian.PutUint64(b[8:], p.hdrSize)
	binary.BigEndian.PutUint64(b[16:], p.seqid)
	copy(b[24:72], p.label)
	copy(b[72:104], p.csumAlg)
	copy(b[168:208], p.uuid)
	binary.BigEndian.PutUint64(b[256:], off)
	copy(b[4096:], text)
	setChecksum(b)
	return b
}

// setChecksum recomputes the checksum of a header copy, as cryptsetup
// does: over the whole copy with the csum field zeroed, with the csum_alg
// the header names (sha256 or sha512 here).
func setChecksum(b []byte) {
	clear(b[448 : 448+64])
	var h hash.Hash = sha256.New()
	if string(b[72:78]) == "sha512" {
		h = sha512.New()
	}
	h.Write(b)
	copy(b[448:], h.Sum(nil))
}

// synthImage returns a LUKS2 image (both copies, no keyslot area) for the
// metadata m.
func synthImage(t testing.TB, m map[string]any) []byte {
	t.Helper()
	text, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := synthCopy(text, copyParams{seqid: 1})
	s := synthCopy(text, copyParams{seqid: 1, secondary: true})
	return append(p, s...)
}

func parseBytes(b []byte) (*luks.Header, error) { return luks.Parse(bytes.NewReader(b)) }

func TestSynthValid(t *testing.T) {
	h, err := parseBytes(synthImage(t, synthJSON()))
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || h.UUID != synthUUID || h.Cipher != "aes-xts-plain64" || h.KeySize != 64 ||
		h.Offset != 16<<20 || !h.Dynamic || h.SectorSize != 512 || h.Secondary || h.Seqid != 1 ||
		h.HeaderSize != 0x4000 || h.Segments != 1 || h.SegmentType != "crypt" {
		t.Errorf("header = %+v", h)
	}
	if err := h.VerifyKey(synthKey); err != nil {
		t.Errorf("VerifyKey: %v", err)
	}
}

// TestSynthInvalid feeds single-copy damage: the primary is bad, there is
// no secondary, so Parse must fail and say why.
func TestSynthInvalid(t *testing.T) {
	set := func(path string, v any) func(map[string]any) {
		return func(m map[string]any) {
			keys := strings.Split(path, ".")
			for _, k := range keys[:len(keys)-1] {
				m = m[k].(map[string]any)
			}
			if v == nil {
				delete(m, keys[len(keys)-1])
			} else {
				m[keys[len(keys)-1]] = v
			}
		}
	}
	cases := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"no segments", set("segments", map[string]any{}), "no segments"},
		{"no segment 0", set("segments", map[string]any{"1": synthJSON()["segments"].(map[string]any)["0"]}), "digest 0: no segment"},
		{"offset not number", set("segments.0.offset", "16M"), "not a decimal number"},
		{"offset negative", set("segments.0.offset", "-512"), "not a decimal number"},
		{"offset overflows", set("segments.0.offset", "18446744073709551616"), "out of range"},
		{"offset unaligned", set("segments.0.offset", "1000"), "not a multiple of 512"},
		{"size zero", set("segments.0.size", "0"), "size 0"},
		{"size off sector", set("segments.0.sector_size", 4096), ""},
		{"sector size bad", set("segments.0.sector_size", 1000), "bad sector_size"},
		{"sector size type", set("segments.0.sector_size", "512"), "cannot unmarshal"},
		{"no encryption", set("segments.0.encryption", nil), "without iv_tweak, encryption"},
		{"iv_tweak bad", set("segments.0.iv_tweak", "x"), "iv_tweak"},
		{"json_size wrong", set("config.json_size", "4096"), "json_size"},
		{"no config", set("config", nil), "missing"},
		{"no tokens", set("tokens", nil), "missing"},
		{"keyslot key_size huge", set("keyslots.0.key_size", 1<<40), "bad key_size"},
		{"key size too big", set("keyslots.0.key_size", 4096), "out of range"},
		{"digest names missing keyslot", set("digests.0.keyslots", []any{"5"}), "no keyslot"},
		{"digest salt short", set("digests.0.salt", "AAAA"), "salt"},
		{"digest not base64", set("digests.0.digest", "!!"), "digest is not"},
		{"digest iterations 0", set("digests.0.iterations", 0), "iterations"},
		{"crypt segment without digest", set("digests.0.segments", []any{}), "has no digest"},
		{"two digests for segment 0", set("digests.1", synthJSON()["digests"].(map[string]any)["0"]), "2 digests"},
		{"integrity incomplete", set("segments.0.integrity", map[string]any{"type": "hmac(sha256)"}), "incomplete integrity"},
		{"keyslot id", set("keyslots.x", map[string]any{"type": "luks2", "key_size": 64}), "not a number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := synthJSON()
			c.edit(m)
			if c.name == "size off sector" {
				m["segments"].(map[string]any)["0"].(map[string]any)["size"] = "1024"
				c.want = "not a multiple of sector_size"
			}
			text, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parseBytes(synthCopy(text, copyParams{}))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestSynthBinary damages the binary header or the JSON area framing.
func TestSynthBinary(t *testing.T) {
	text, _ := json.Marshal(synthJSON())
	good := synthCopy(text, copyParams{})
	cases := []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"empty", func([]byte) []byte { return nil }, "no LUKS header"},
		{"truncated binary", func(b []byte) []byte { return b[:1000] }, "at 0: truncated (1000 bytes)"},
		{"not luks", func(b []byte) []byte { return make([]byte, 1<<16) }, "no LUKS header"},
		{"truncated json", func(b []byte) []byte { return b[:8192] }, "truncated"},
		{"version 3", func(b []byte) []byte { b[7] = 3; return b }, "unknown LUKS version 3"},
		{"hdr_size huge", func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[8:], 1<<40)
			setChecksum(b)
			return b
		}, "bad hdr_size"},
		{"hdr_size odd", func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[8:], 0x5000)
			return b
		}, "bad hdr_size"},
		{"hdr_offset", func(b []byte) []byte { b[263] = 1; setChecksum(b); return b }, "hdr_offset"},
		{"checksum", func(b []byte) []byte { b[5000] ^= 1; return b }, "checksum mismatch"},
		{"csum_alg unknown", func(b []byte) []byte {
			copy(b[72:104], "whirlpool\x00")
			return b
		}, `hash "whirlpool"`},
		{"garbage after json", func(b []byte) []byte {
			b[len(b)-1] = 'x'
			setChecksum(b)
			return b
		}, "non-NUL bytes"},
		{"no NUL", func(b []byte) []byte {
			for i := 4096 + len(text); i < len(b); i++ {
				b[i] = ' '
			}
			setChecksum(b)
			return b
		}, "no NUL"},
		{"not an object", func(b []byte) []byte {
			b[4096] = '['
			setChecksum(b)
			return b
		}, "does not start with"},
		{"bad uuid", func(b []byte) []byte {
			copy(b[168:], "../../etc")
			setChecksum(b)
			return b
		}, "bad uuid"},
		{"short uuid", func(b []byte) []byte {
			clear(b[168:208])
			copy(b[168:], "ab")
			setChecksum(b)
			return b
		}, "bad uuid"},
		{"label control chars", func(b []byte) []byte {
			copy(b[24:], "a\nb")
			setChecksum(b)
			return b
		}, "non-printable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.edit(bytes.Clone(good))
			h, err := parseBytes(b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse = %+v, %v; want error containing %q", h, err, c.want)
			}
		})
	}
}

// TestSynthCopies checks which copy wins.
func TestSynthCopies(t *testing.T) {
	cases := []struct {
		name          string
		p, s          copyParams
		breakP        bool
		wantSecondary bool
		wantLabel     string
	}{
		{"equal seqid: primary", copyParams{seqid: 5, label: "p"}, copyParams{seqid: 5, label: "s"}, false, false, "p"},
		{"newer primary", copyParams{seqid: 6, label: "p"}, copyParams{seqid: 5, label: "s"}, false, false, "p"},
		{"newer secondary", copyParams{seqid: 5, label: "p"}, copyParams{seqid: 6, label: "s"}, false, true, "s"},
		{"broken newer primary", copyParams{seqid: 9, label: "p"}, copyParams{seqid: 5, label: "s"}, true, true, "s"},
		{"64k headers, broken primary", copyParams{seqid: 9, label: "p", hdrSize: 0x10000},
			copyParams{seqid: 5, label: "s", hdrSize: 0x10000}, true, true, "s"},
		{"64k headers, both good", copyParams{seqid: 4, label: "p", hdrSize: 0x10000},
			copyParams{seqid: 5, label: "s", hdrSize: 0x10000}, false, true, "s"},
		{"sha512 checksum", copyParams{seqid: 2, label: "p", csumAlg: "sha512"}, copyParams{seqid: 1, label: "s"}, false, false, "p"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.s.secondary = true
			m := synthJSON()
			if c.p.hdrSize != 0 {
				m["config"].(map[string]any)["json_size"] = "61440"
			}
			text, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			p := synthCopy(text, c.p)
			if c.breakP {
				p[5000] ^= 0xff
			}
			img := append(p, synthCopy(text, c.s)...)
			h, err := parseBytes(img)
			if err != nil {
				t.Fatal(err)
			}
			if h.Secondary != c.wantSecondary || h.Label != c.wantLabel {
				t.Errorf("Secondary=%v Label=%q, want %v %q", h.Secondary, h.Label, c.wantSecondary, c.wantLabel)
			}
		})
	}
}

func TestSynthBothBroken(t *testing.T) {
	img := synthImage(t, synthJSON())
	img[5000] ^= 1
	img[0x4000+5000] ^= 1
	_, err := parseBytes(img)
	if err == nil || !strings.Contains(err.Error(), "primary header") || !strings.Contains(err.Error(), "secondary header") {
		t.Fatalf("Parse error = %v, want both copies named", err)
	}
}

func TestVerifyKeyErrors(t *testing.T) {
	base, err := parseBytes(synthImage(t, synthJSON()))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(h *luks.Header)
		key  []byte
		want error
		msg  string
	}{
		{"right", func(*luks.Header) {}, synthKey, nil, ""},
		{"flipped bit", func(*luks.Header) {}, append([]byte{0x43}, synthKey[1:]...), luks.ErrWrongKey, ""},
		{"short", func(*luks.Header) {}, synthKey[:32], luks.ErrWrongKey, "32 bytes, header wants 64"},
		{"empty", func(h *luks.Header) { h.KeySize = 0 }, nil, luks.ErrWrongKey, "empty"},
		{"unknown size, right key", func(h *luks.Header) { h.KeySize = 0 }, synthKey, nil, ""},
		{"digest type", func(h *luks.Header) { h.Digest.Type = "argon2id" }, synthKey, luks.ErrUnsupported, `digest type "argon2id"`},
		{"no digest", func(h *luks.Header) { h.Digest.Type = "" }, synthKey, luks.ErrUnsupported, "no key digest"},
		{"hash", func(h *luks.Header) { h.Digest.Hash = "ripemd160" }, synthKey, luks.ErrUnsupported, `hash "ripemd160"`},
		{"digest size", func(h *luks.Header) { h.Digest.Value = h.Digest.Value[:25] }, synthKey, nil, "25-byte digest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := *base
			h.Digest.Value = bytes.Clone(base.Digest.Value)
			c.edit(&h)
			err := h.VerifyKey(c.key)
			switch {
			case c.want == nil && c.msg == "" && err != nil:
				t.Fatalf("VerifyKey = %v, want nil", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("VerifyKey = %v, want %v", err, c.want)
			case c.msg != "" && (err == nil || !strings.Contains(err.Error(), c.msg)):
				t.Fatalf("VerifyKey = %v, want message with %q", err, c.msg)
			}
		})
	}
}

// TestParseFileTooShortForSecondary: a primary-only image (no secondary
// area at all) still parses from the primary.
func TestParsePrimaryOnly(t *testing.T) {
	text, _ := json.Marshal(synthJSON())
	path := t.TempDir() + "/img"
	if err := os.WriteFile(path, synthCopy(text, copyParams{}), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := luks.Parse(f)
	if err != nil || h.Secondary {
		t.Fatalf("Parse = %+v, %v", h, err)
	}
}

func TestSynthLUKS1(t *testing.T) {
	cases := []struct {
		name string
		edit func(b []byte) []byte
		want string // error substring; "" for success
	}{
		{"valid", func(b []byte) []byte { return b }, ""},
		{"header only", func(b []byte) []byte { return b[:592] }, ""},
		{"truncated", func(b []byte) []byte { return b[:500] }, "LUKS1 header truncated"},
		{"key_bytes 0", func(b []byte) []byte { binary.BigEndian.PutUint32(b[108:], 0); return b }, "key_bytes 0"},
		{"key_bytes huge", func(b []byte) []byte { binary.BigEndian.PutUint32(b[108:], 1<<31); return b }, "out of range"},
		{"iterations 0", func(b []byte) []byte { binary.BigEndian.PutUint32(b[164:], 0); return b }, "mk_digest_iter is 0"},
		{"no cipher mode", func(b []byte) []byte { clear(b[40:72]); return b }, "empty cipher"},
		{"control char", func(b []byte) []byte { b[9] = '\n'; return b }, "non-printable"},
		{"bad uuid", func(b []byte) []byte { copy(b[168:], "x y"); return b }, "bad uuid"},
		// Hex, but not 8-4-4-4-12: it once reached a [:12] slice in the
		// loader and panicked.
		{"short uuid", func(b []byte) []byte { clear(b[168:208]); copy(b[168:], "ab"); return b }, "bad uuid"},
		{"uuid without dashes", func(b []byte) []byte {
			clear(b[168:208])
			copy(b[168:], "11111111222243338444555555555555")
			return b
		}, "bad uuid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := parseBytes(c.edit(synthLUKS1()))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if h.Version != 1 || h.Cipher != "aes-xts-plain64" || h.KeySize != 64 || h.Offset != 4096*512 ||
					h.SectorSize != 512 || !h.Dynamic || h.Digest.Hash != "sha256" || h.Digest.Iterations != 1000 ||
					len(h.Digest.Value) != 20 || len(h.Digest.Salt) != 32 || h.UUID != synthUUID {
					t.Errorf("header = %+v", h)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse = %+v, %v; want error with %q", h, err, c.want)
			}
		})
	}
}

// TestFingerprint: what the crash kernel relies on changes the fingerprint;
// keyslot changes do not.
func TestFingerprint(t *testing.T) {
	base, err := parseBytes(synthImage(t, synthJSON()))
	if err != nil {
		t.Fatal(err)
	}
	fp := base.Fingerprint()
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != 7+64 {
		t.Fatalf("Fingerprint = %q", fp)
	}
	for name, edit := range map[string]func(m map[string]any){
		"iterations": func(m map[string]any) { m["digests"].(map[string]any)["0"].(map[string]any)["iterations"] = 1 << 30 },
		"cipher": func(m map[string]any) {
			m["segments"].(map[string]any)["0"].(map[string]any)["encryption"] = "aes-cbc-essiv:sha256"
		},
		"offset": func(m map[string]any) { m["segments"].(map[string]any)["0"].(map[string]any)["offset"] = "8388608" },
	} {
		m := synthJSON()
		edit(m)
		h, err := parseBytes(synthImage(t, m))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h.Fingerprint() == fp {
			t.Errorf("%s changed, fingerprint did not", name)
		}
	}
	m := synthJSON()
	m["keyslots"].(map[string]any)["1"] = map[string]any{"type": "luks2", "key_size": 64}
	m["digests"].(map[string]any)["0"].(map[string]any)["keyslots"] = []any{"0", "1"}
	h, err := parseBytes(synthImage(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if h.Fingerprint() != fp {
		t.Error("a new keyslot changed the fingerprint")
	}
}
