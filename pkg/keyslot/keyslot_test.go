package keyslot_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ukdump/ukdump/pkg/keyslot"
	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// TestUnlock: on volumes made by the real cryptsetup, the passphrase gives
// exactly the volume key cryptsetup reports, and a wrong one gives none.
func TestUnlock(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cryptsetup luksFormat and Argon2")
	}
	for _, c := range []struct {
		name string
		o    lukstest.Options
	}{
		{"luks1 xts-256", lukstest.Options{Version: 1, KeyBits: 256}},
		{"luks1 xts-512", lukstest.Options{Version: 1}},
		{"luks1 cbc-essiv", lukstest.Options{Version: 1, Cipher: "aes-cbc-essiv:sha256", KeyBits: 256}},
		{"luks2 pbkdf2", lukstest.Options{}},
		{"luks2 argon2id", lukstest.Options{PBKDF: "argon2id-min", SectorSize: 4096}},
		{"luks2 argon2i sha512 af", lukstest.Options{PBKDF: "argon2id-min",
			Args: []string{"--pbkdf", "argon2i", "--hash", "sha512"}}},
		{"luks2 cbc-plain64", lukstest.Options{Cipher: "aes-cbc-plain64", KeyBits: 256}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			want, h := lukstest.Format(t, img, 20<<20, c.o)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pass := c.o.Passphrase
			if pass == "" {
				pass = lukstest.DefaultPassphrase
			}
			key, err := keyslot.Unlock(f, h, []byte(pass))
			if err != nil {
				t.Fatalf("Unlock: %v", err)
			}
			if !bytes.Equal(key, want) {
				t.Fatalf("Unlock gave %x, cryptsetup says %x", key, want)
			}
			if _, err := keyslot.Unlock(f, h, []byte(pass+"x")); !errors.Is(err, keyslot.ErrNoKeyslot) {
				t.Fatalf("wrong passphrase: %v, want ErrNoKeyslot", err)
			}
		})
	}
}

// TestUnlockRefuses: keyslots asking the impossible are refused by name,
// not computed.
func TestUnlockRefuses(t *testing.T) {
	h := &luks.Header{UUID: "11111111-2222-4333-8444-555555555555", KeySize: 32, Keyslots: []luks.Keyslot{{
		ID: 0, Priority: 1, KeySize: 32, Stripes: 4000, AFHash: "sha256", AreaCipher: "aes-xts-plain64", AreaKeySize: 64,
		AreaSize: 1 << 20, KDF: luks.KDF{Type: "argon2id", Time: 4, MemoryKiB: 64 << 20, Threads: 4, Salt: make([]byte, 32)},
	}}}
	_, err := keyslot.Unlock(bytes.NewReader(make([]byte, 2<<20)), h, []byte("x"))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("out of cryptsetup's bounds")) {
		t.Fatalf("Unlock = %v, want a refusal of the Argon2 memory", err)
	}
	h.Keyslots[0].KDF = luks.KDF{Type: "scrypt", Salt: make([]byte, 32)}
	if _, err := keyslot.Unlock(bytes.NewReader(nil), h, []byte("x")); !errors.Is(err, luks.ErrUnsupported) {
		t.Fatalf("Unlock = %v, want ErrUnsupported", err)
	}
	h.Keyslots = nil
	if _, err := keyslot.Unlock(bytes.NewReader(nil), h, []byte("x")); err == nil {
		t.Fatal("Unlock without keyslots succeeded")
	}
}
