package scrub

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"strings"
	"testing"
)

func randomKey(rng *rand.Rand, n int) []byte {
	k := make([]byte, n)
	fill(rng, k)
	return k
}

// kindsOf counts the secrets by kind.
func kindsOf(ss []secret) Counts {
	var c Counts
	for _, s := range ss {
		c[s.kind]++
	}
	return c
}

func TestDerive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tab := newAESTables()
	for _, tc := range []struct {
		cipher string
		n      int
		want   Counts // key, half, salt, enc, dec, partial
		note   string
	}{
		{"aes-xts-plain64", 64, Counts{1, 2, 0, 2, 2, 0}, ""},
		{"aes-xts-plain64", 32, Counts{1, 2, 0, 2, 2, 0}, ""},
		{"aes-xts-plain", 48, Counts{1, 2, 0, 2, 2, 0}, ""},
		{"aes-cbc-essiv:sha256", 32, Counts{1, 0, 1, 2, 2, 0}, ""},
		{"aes-cbc-essiv:sha256", 16, Counts{1, 0, 1, 2, 2, 0}, ""},
		{"aes-cbc-plain64", 16, Counts{1, 0, 0, 1, 1, 0}, ""},
		{"aes-ecb", 24, Counts{1, 0, 0, 1, 1, 0}, ""},
		{"aes-lrw-benbi", 48, Counts{1, 2, 0, 1, 1, 0}, ""},
		{"aes-cbc-essiv:wp512", 32, Counts{1, 0, 0, 1, 1, 0}, "cannot compute wp512"},
		{"serpent-xts-plain64", 64, Counts{1, 2, 0, 0, 0, 0}, "derived for aes only"},
	} {
		key := randomKey(rng, tc.n)
		out, notes, err := derive(Volume{Cipher: tc.cipher, Key: key}, tab)
		if err != nil {
			t.Errorf("%s/%d: %v", tc.cipher, tc.n, err)
			continue
		}
		if got := kindsOf(out); got != tc.want {
			t.Errorf("%s/%d: %s, want %s", tc.cipher, tc.n, got, tc.want)
		}
		if got := strings.Join(notes, "; "); (tc.note == "") != (got == "") || !strings.Contains(got, tc.note) {
			t.Errorf("%s/%d: notes %q, want %q", tc.cipher, tc.n, got, tc.note)
		}
		for _, s := range out {
			if s.kind == Key && !bytes.Equal(s.b, key) {
				t.Errorf("%s: the key pattern is not the key", tc.cipher)
			}
			if &s.b[0] == &key[0] {
				t.Errorf("%s: a pattern shares the caller's key", tc.cipher)
			}
		}
	}
	for _, tc := range []struct{ cipher string }{{"aes"}, {"aes-xts-plain64-extra"}} {
		if _, _, err := derive(Volume{Cipher: tc.cipher, Key: randomKey(rng, 32)}, tab); err == nil {
			t.Errorf("%q accepted", tc.cipher)
		}
	}
	if _, _, err := derive(Volume{Cipher: "aes-xts-plain64", Key: randomKey(rng, 40)}, tab); err == nil {
		t.Error("aes-xts with two 20-byte halves accepted")
	}
}

// TestDeriveXTSAndESSIV checks what the patterns are: the XTS halves in
// order (data key, tweak key) with their schedules, and ESSIV's salt,
// sha256 of the whole key, with its AES-256 schedules.
func TestDeriveXTSAndESSIV(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tab := newAESTables()
	key := randomKey(rng, 64)
	out, _, err := derive(Volume{Cipher: "aes-xts-plain64", Key: key}, tab)
	if err != nil {
		t.Fatal(err)
	}
	e1, d1, _ := tab.expand(key[:32])
	e2, d2, _ := tab.expand(key[32:])
	want := [][]byte{key, key[:32], key[32:], e1, d1, e2, d2}
	for i, w := range want {
		if !bytes.Equal(out[i].b, w) {
			t.Errorf("xts pattern %d (%s) is not what the kernel derives", i, out[i].kind)
		}
	}
	key = randomKey(rng, 32)
	out, _, err = derive(Volume{Cipher: "aes-cbc-essiv:sha256", Key: key}, tab)
	if err != nil {
		t.Fatal(err)
	}
	salt := sha256.Sum256(key)
	es, ds, _ := tab.expand(salt[:])
	ek, dk, _ := tab.expand(key)
	want = [][]byte{key, salt[:], ek, dk, es, ds}
	for i, w := range want {
		if !bytes.Equal(out[i].b, w) {
			t.Errorf("essiv pattern %d (%s) is not what the kernel derives", i, out[i].kind)
		}
	}
}

func TestNewLeavesOutWhatItCannotScrub(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	key := randomKey(rng, 32)
	flatKey := bytes.Repeat([]byte{7}, 32)
	s, err := New([]Volume{
		{Cipher: "aes-cbc-plain64", Key: key},
		{Cipher: "aes-cbc-plain64", Key: key}, // the same volume twice
		{Cipher: "cast5-cbc-plain", Key: randomKey(rng, 10)},
		{Cipher: "aes-cbc-plain64", Key: flatKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wipe()
	// The duplicate adds nothing; the 10-byte cast5 key is too short; the
	// flat key and its encryption schedule, which starts with it, are left
	// out, its decryption schedule (the last round key first) is not.
	if got, want := s.Patterns(), (Counts{1, 0, 0, 1, 2, 0}); got != want {
		t.Errorf("patterns %s, want %s", got, want)
	}
	notes := strings.Join(s.Notes(), "\n")
	for _, want := range []string{"volume 3: the 10-byte key is shorter than 16 bytes", "volume 4: the key has 8 equal bytes", "volume 4: the encryption schedule has 8 equal bytes", "volume 3: cast5-cbc-plain: key schedules are derived for aes only"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, string(key[:4])) {
		t.Error("a note holds key bytes")
	}
	if s.Volumes() != 4 {
		t.Errorf("Volumes = %d", s.Volumes())
	}
	if _, err := New([]Volume{{Cipher: "aes-xts-plain64", Key: randomKey(rng, 30)}}); err == nil || !strings.Contains(err.Error(), "scrub: volume 1: aes-xts-plain64: 15-byte AES key") {
		t.Errorf("bad key length: %v", err)
	}
}

// TestWipe: Wipe leaves no pattern byte, word or filter bit behind, and a
// wiped Scrubber finds nothing.
func TestWipe(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	key := randomKey(rng, 64)
	s, err := New([]Volume{{Cipher: "aes-xts-plain64", Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	arena, head, inner, filter := s.arena, s.head, s.inner, s.filter
	if len(arena) == 0 || len(head) == 0 || len(inner) == 0 {
		t.Fatal("nothing indexed")
	}
	s.Wipe()
	for _, b := range arena {
		if b != 0 {
			t.Fatal("pattern bytes left after Wipe")
		}
	}
	for _, e := range append(head, inner...) {
		if e != (entry{}) {
			t.Fatal("index entries left after Wipe")
		}
	}
	for _, w := range filter {
		if w != 0 {
			t.Fatal("filter bits left after Wipe")
		}
	}
	page := make([]byte, 4096)
	copy(page[100:], key)
	if m := s.scan(page, nil, true, nil); len(m) != 0 {
		t.Errorf("a wiped Scrubber found %d matches", len(m))
	}
}

func TestKeys(t *testing.T) {
	var none *Keys
	none.Add("aes-xts-plain64", []byte("not kept"))
	none.Wipe()
	if none.Len() != 0 || none.Volumes() != nil {
		t.Error("a nil Keys kept something")
	}
	k := &Keys{}
	src := bytes.Repeat([]byte{0xab}, 64)
	k.Add("aes-xts-plain64", src)
	src[0] = 0 // the caller wipes its own copy
	vols := k.Volumes()
	if k.Len() != 1 || vols[0].Cipher != "aes-xts-plain64" || vols[0].Key[0] != 0xab || len(vols[0].Key) != 64 {
		t.Fatalf("kept %+v", vols)
	}
	kept := vols[0].Key
	k.Wipe()
	if !bytes.Equal(kept, make([]byte, 64)) {
		t.Error("Wipe left key bytes")
	}
	if k.Len() != 0 {
		t.Error("Wipe kept the volumes")
	}
}

// TestFilterMissesFlatWords: whatever the keys, no word of one repeated
// byte (zeros, 0xff, poison) gets past the filter, so zero pages cost no
// lookups. The keys of seed 41 once let the zero word through.
func TestFilterMissesFlatWords(t *testing.T) {
	for seed := range uint64(100) {
		s, err := New(twoVolumes(rand.New(rand.NewPCG(seed, seed))))
		if err != nil {
			t.Fatal(err)
		}
		for b := range uint64(256) {
			if s.maybe(b * 0x0101010101010101) {
				t.Fatalf("seed %d: the word of bytes %#02x hits the filter", seed, b)
			}
		}
		s.Wipe()
	}
}
