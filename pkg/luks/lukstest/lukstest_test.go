package lukstest_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// randomFile writes n random bytes to a new file and returns them.
func randomFile(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// decryptAll returns the decrypted data segment of image.
func decryptAll(t *testing.T, image string, h *luks.Header, key []byte) []byte {
	t.Helper()
	out, err := os.Create(t.TempDir() + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := lukstest.Decrypt(image, h, key, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		o    lukstest.Options
	}{
		{"luks1", lukstest.Options{Version: 1}},
		{"luks2 sector 512", lukstest.Options{SectorSize: 512}},
		{"luks2 sector 4096 key 256", lukstest.Options{SectorSize: 4096, KeyBits: 256}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img := dir + "/img"
			key, h := lukstest.Format(t, img, 20<<20, c.o)
			// Not a whole number of sectors nor of Encrypt's chunks.
			plain := randomFile(t, dir+"/plain", 1<<20+3*4096+100)
			pf, err := os.Open(dir + "/plain")
			if err != nil {
				t.Fatal(err)
			}
			defer pf.Close()
			if err := lukstest.Encrypt(img, h, key, pf, int64(len(plain))); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, plain[:512]) {
				t.Fatal("plaintext found in the image")
			}
			got := decryptAll(t, img, h, key)
			if want := int(uint64(len(raw))-h.Offset) / h.SectorSize * h.SectorSize; len(got) != want {
				t.Fatalf("decrypted %d bytes, want the %d-byte segment", len(got), want)
			}
			if !bytes.Equal(got[:len(plain)], plain) {
				t.Fatal("round trip changed the data")
			}
			// The padding of the last sector decrypts to zeros.
			pad := got[len(plain) : (len(plain)+h.SectorSize-1)/h.SectorSize*h.SectorSize]
			if !bytes.Equal(pad, make([]byte, len(pad))) {
				t.Fatal("last sector not zero-padded")
			}
		})
	}
}

func TestEncryptErrors(t *testing.T) {
	dir := t.TempDir()
	img := dir + "/img"
	key, h := lukstest.Format(t, img, 20<<20, lukstest.Options{})
	small := bytes.NewReader(make([]byte, 4096))
	wrong := bytes.Clone(key)
	wrong[0] ^= 1
	if err := lukstest.Encrypt(img, h, wrong, small, 4096); !errors.Is(err, luks.ErrWrongKey) {
		t.Errorf("Encrypt with a wrong key = %v", err)
	}
	if err := lukstest.Encrypt(img, h, key, small, 8192); err == nil {
		t.Error("Encrypt past the end of the plaintext succeeded")
	}
	if err := lukstest.Encrypt(img, h, key, small, 5<<20); err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Errorf("Encrypt of more than the segment = %v", err)
	}
	img1 := dir + "/cbc"
	key1, h1 := lukstest.Format(t, img1, 8<<20, lukstest.Options{Version: 1, Cipher: "aes-cbc-essiv:sha256", KeyBits: 256})
	if err := lukstest.Encrypt(img1, h1, key1, small, 4096); err == nil || !strings.Contains(err.Error(), "only aes-xts-plain64") {
		t.Errorf("Encrypt with aes-cbc = %v", err)
	}
}

// TestDecryptCryptsetupEncrypted has cryptsetup encrypt a plaintext image
// in place (offline, in userspace: no device-mapper needed) and checks
// that Decrypt reads back the plaintext. cryptsetup's offline reencryption
// computes IVs as dm-crypt does, so this checks Decrypt's (and the
// Table's) IV rules, including 4096-byte sectors without iv_large_sectors,
// against an implementation that is not ours.
func TestDecryptCryptsetupEncrypted(t *testing.T) {
	cs := lukstest.Cryptsetup(t)
	const size, reduce = 24 << 20, 8 << 20
	for _, ss := range []string{"512", "4096"} {
		t.Run("sector "+ss, func(t *testing.T) {
			img := t.TempDir() + "/img"
			orig := randomFile(t, img, size)
			cmd := exec.Command(cs, "reencrypt", "--encrypt", "--batch-mode", "--type", "luks2",
				"--sector-size", ss, "--reduce-device-size", "8M", "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", "--key-file", "-", img)
			cmd.Stdin = strings.NewReader(lukstest.DefaultPassphrase)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("cryptsetup reencrypt --encrypt: %v\n%s", err, out)
			}
			key, err := lukstest.DumpVolumeKey(cs, img, lukstest.DefaultPassphrase)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			h, err := luks.Parse(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if strconv.Itoa(h.SectorSize) != ss {
				t.Fatalf("sector size %d", h.SectorSize)
			}
			got := decryptAll(t, img, h, key)
			// The data was moved behind the new header; what fitted in
			// the reduced device is the volume's start.
			if n := size - reduce; !bytes.Equal(got[:n], orig[:n]) {
				t.Fatal("decrypted volume differs from the plaintext cryptsetup encrypted")
			}
		})
	}
}

// TestQEMUReadsEncrypt checks Encrypt and Decrypt against QEMU's LUKS1
// driver, an implementation independent of ours and of the kernel, both
// ways. QEMU 7.2 reads LUKS1 only, so this covers 512-byte sectors.
func TestQEMUReadsEncrypt(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (Debian: qemu-utils)")
	}
	lukstest.Cryptsetup(t)
	dir := t.TempDir()
	secret := "secret,id=s,data=" + lukstest.DefaultPassphrase

	t.Run("qemu decrypts ours", func(t *testing.T) {
		img := dir + "/ours.luks"
		key, h := lukstest.Format(t, img, 8<<20, lukstest.Options{Version: 1})
		plain := randomFile(t, dir+"/plain", 1<<20+512)
		pf, err := os.Open(dir + "/plain")
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		if err := lukstest.Encrypt(img, h, key, pf, int64(len(plain))); err != nil {
			t.Fatal(err)
		}
		out := dir + "/qemu.raw"
		if b, err := exec.Command(qemuImg, "convert", "--object", secret, "-O", "raw", "--image-opts",
			"driver=luks,key-secret=s,file.filename="+img, out).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, b)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < len(plain) || !bytes.Equal(got[:len(plain)], plain) {
			t.Fatal("QEMU decrypts Encrypt's output to something else")
		}
	})

	t.Run("ours decrypts qemu", func(t *testing.T) {
		// QEMU writes into a cryptsetup-made image (-n: no create, which
		// would run QEMU's own PBKDF benchmark, slow and flaky here).
		img := dir + "/theirs.luks"
		key, h := lukstest.Format(t, img, 8<<20, lukstest.Options{Version: 1})
		src := dir + "/src.raw"
		plain := randomFile(t, src, 2<<20)
		if b, err := exec.Command(qemuImg, "convert", "-n", "--object", secret, "-f", "raw", src,
			"--target-image-opts", "driver=luks,key-secret=s,file.filename="+img).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, b)
		}
		got := decryptAll(t, img, h, key)
		if len(got) < len(plain) || !bytes.Equal(got[:len(plain)], plain) {
			t.Fatal("Decrypt of what QEMU wrote differs from the plaintext")
		}
	})
}
