// Package lukstest makes LUKS images for tests: it formats them with the
// real cryptsetup and fills or reads their data segment in userspace the
// way dm-crypt would, so tests need no device-mapper on the host.
package lukstest

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/luks"
	"golang.org/x/crypto/xts"
)

// DefaultPassphrase is the passphrase Format uses when Options has none.
const DefaultPassphrase = "ukdump-test-passphrase"

// Options says how Format calls cryptsetup luksFormat. The zero value is a
// LUKS2 aes-xts-plain64 volume with a 512-bit key, 512-byte sectors and a
// fast PBKDF2 keyslot.
type Options struct {
	// Version is 1 or 2 (0 means 2).
	Version int
	// Cipher is the cipher spec (default "aes-xts-plain64").
	Cipher string
	// KeyBits is the volume key size in bits (default 512).
	KeyBits int
	// SectorSize is the LUKS2 encryption sector size. 0 means 512, not
	// cryptsetup's choice: on an image file cryptsetup picks 4096, and a
	// test should say so when it wants that.
	SectorSize int
	// PBKDF is the keyslot KDF: "" or "pbkdf2" for PBKDF2 at 1000
	// iterations (milliseconds); "argon2id" for cryptsetup's benchmarked
	// defaults (seconds per format and unlock, and up to 1 GiB of memory);
	// "argon2id-min" for Argon2id at the lowest cost cryptsetup takes.
	// The volume key digest follows: 1000 iterations unless "argon2id".
	PBKDF string
	// Passphrase unlocks keyslot 0 (default DefaultPassphrase).
	Passphrase string
	// Label is the LUKS2 label.
	Label string
	// Args are more luksFormat arguments, e.g. "--uuid", "...".
	Args []string
}

// Cryptsetup returns the cryptsetup binary. Without one the test is
// skipped, or failed when $CI is set, where a missing tool must not turn
// tests green.
func Cryptsetup(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("cryptsetup")
	if err != nil {
		for _, c := range []string{"/usr/sbin/cryptsetup", "/sbin/cryptsetup"} {
			if _, e := os.Stat(c); e == nil {
				return c
			}
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("cryptsetup not found (install cryptsetup-bin): %v", err)
		}
		t.Skipf("cryptsetup not found: %v", err)
	}
	return p
}

// Format runs cryptsetup luksFormat on a new image file of size bytes at
// path and returns the volume key (read back with luksDump
// --dump-volume-key) and the header as luks.Parse reads it. Any failure
// ends the test.
func Format(t testing.TB, path string, size int64, o Options) (key []byte, h *luks.Header) {
	t.Helper()
	cs := Cryptsetup(t)
	if o.Version == 0 {
		o.Version = 2
	}
	if o.Cipher == "" {
		o.Cipher = "aes-xts-plain64"
	}
	if o.KeyBits == 0 {
		o.KeyBits = 512
	}
	if o.Passphrase == "" {
		o.Passphrase = DefaultPassphrase
	}
	f, err := os.Create(path)
	if err == nil {
		err = f.Truncate(size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("lukstest: creating %s: %v", path, err)
	}
	args := []string{"luksFormat", "--batch-mode", "--type", "luks" + strconv.Itoa(o.Version),
		"--cipher", o.Cipher, "--key-size", strconv.Itoa(o.KeyBits), "--key-file", "-"}
	switch o.PBKDF {
	case "", "pbkdf2":
		// Forcing iterations also skips the digest benchmark, so the volume
		// key digest gets cryptsetup's minimum of 1000 iterations.
		args = append(args, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
	case "argon2id":
		args = append(args, "--pbkdf", "argon2id")
	case "argon2id-min":
		args = append(args, "--pbkdf", "argon2id", "--pbkdf-force-iterations", "4",
			"--pbkdf-memory", "32768", "--pbkdf-parallel", "1")
	default:
		t.Fatalf("lukstest: unknown PBKDF %q", o.PBKDF)
	}
	if o.Version == 2 {
		ss := o.SectorSize
		if ss == 0 {
			ss = 512
		}
		args = append(args, "--sector-size", strconv.Itoa(ss))
		if o.Label != "" {
			args = append(args, "--label", o.Label)
		}
	} else if (o.SectorSize != 0 && o.SectorSize != 512) || o.Label != "" {
		t.Fatalf("lukstest: LUKS1 has neither sector size %d nor label %q", o.SectorSize, o.Label)
	}
	args = append(args, o.Args...)
	args = append(args, path)
	if out, err := run(cs, o.Passphrase, args...); err != nil {
		t.Fatalf("lukstest: cryptsetup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	key, err = DumpVolumeKey(cs, path, o.Passphrase)
	if err != nil {
		t.Fatalf("lukstest: %v", err)
	}
	if len(key)*8 != o.KeyBits {
		t.Fatalf("lukstest: luksDump gave a %d-bit key, formatted with %d", len(key)*8, o.KeyBits)
	}
	img, err := os.Open(path)
	if err != nil {
		t.Fatalf("lukstest: %v", err)
	}
	defer img.Close()
	h, err = luks.Parse(img)
	if err != nil {
		t.Fatalf("lukstest: parsing what cryptsetup wrote: %v", err)
	}
	return key, h
}

// DumpVolumeKey asks cryptsetup (at path cs) for the volume key of the
// LUKS image at path, unlocking a keyslot with passphrase.
func DumpVolumeKey(cs, path, passphrase string) ([]byte, error) {
	out, err := run(cs, passphrase, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", "-", path)
	if err != nil {
		return nil, fmt.Errorf("cryptsetup luksDump --dump-volume-key %s: %v\n%s", path, err, out)
	}
	return parseKeyDump(out)
}

// parseKeyDump reads the hex bytes of "MK dump:" and its continuation
// lines (indented) from luksDump --dump-volume-key output.
func parseKeyDump(out []byte) ([]byte, error) {
	var hexKey strings.Builder
	in := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "MK dump:"); ok {
			in = true
			line = rest
		} else if !in || !(strings.HasPrefix(line, "\t") || strings.HasPrefix(line, " ")) {
			if in {
				break
			}
			continue
		}
		hexKey.WriteString(strings.Join(strings.Fields(line), ""))
	}
	if !in {
		return nil, fmt.Errorf("no \"MK dump:\" in luksDump output:\n%s", out)
	}
	return hex.DecodeString(hexKey.String())
}

func run(name, stdin string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	return cmd.CombinedOutput()
}

// chunk is how much Encrypt and Decrypt hold at once: images are up to
// gigabytes, and a multiple of every sector size keeps sectors whole.
const chunk = 1 << 20

// volume is an image's data segment as Table maps it, with the cipher.
type volume struct {
	f      *os.File
	t      luks.Table
	c      *xts.Cipher
	start  int64 // data offset in the image, bytes
	length int64 // segment length, bytes
}

func openVolume(image string, h *luks.Header, key []byte, flag int) (*volume, error) {
	if err := h.VerifyKey(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(image, flag, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	t, err := h.Table(uint64(fi.Size()))
	if err != nil {
		f.Close()
		return nil, err
	}
	if t.Cipher != "aes-xts-plain64" {
		f.Close()
		return nil, fmt.Errorf("lukstest: cipher %s: only aes-xts-plain64 is supported", t.Cipher)
	}
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lukstest: %w", err)
	}
	return &volume{f: f, t: t, c: c, start: int64(t.Offset) * 512, length: int64(t.Length) * 512}, nil
}

// crypt runs the cipher over buf, which holds whole sectors starting at
// byte off of the data segment, in place. The plain64 IV is what dm-crypt
// computes: the 512-byte sector number within the target plus iv_offset,
// divided by the sectors-per-sector only with iv_large_sectors
// (drivers/md/dm-crypt.c, crypt_convert_block_skcipher).
func (v *volume) crypt(buf []byte, off int64, encrypt bool) {
	ss := v.t.SectorSize
	large := false
	for _, p := range v.t.Params {
		large = large || p == "iv_large_sectors"
	}
	for i := 0; i < len(buf); i += ss {
		iv := uint64(off+int64(i))/512 + v.t.IVOffset
		if large {
			iv /= uint64(ss / 512)
		}
		s := buf[i : i+ss]
		if encrypt {
			v.c.Encrypt(s, s, iv)
		} else {
			v.c.Decrypt(s, s, iv)
		}
	}
}

// Encrypt writes plainSize bytes of plain into the data segment of the
// LUKS image, encrypted with the volume key as dm-crypt with h's Table
// would write them (aes-xts-plain64 only). A last partial sector is padded
// with zeros; the rest of the segment is left alone.
func Encrypt(image string, h *luks.Header, key []byte, plain io.ReaderAt, plainSize int64) error {
	v, err := openVolume(image, h, key, os.O_RDWR)
	if err != nil {
		return fmt.Errorf("lukstest: encrypt %s: %w", image, err)
	}
	defer v.f.Close()
	if plainSize < 0 || plainSize > v.length {
		return fmt.Errorf("lukstest: encrypt %s: %d bytes do not fit the %d-byte data segment", image, plainSize, v.length)
	}
	buf := make([]byte, chunk)
	ss := int64(v.t.SectorSize)
	for off := int64(0); off < plainSize; off += chunk {
		n := min(chunk, plainSize-off)
		got, err := plain.ReadAt(buf[:n], off)
		if int64(got) < n {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("lukstest: encrypt %s: reading plaintext at %d: %w", image, off, err)
		}
		whole := (n + ss - 1) / ss * ss
		clear(buf[n:whole])
		v.crypt(buf[:whole], off, true)
		if _, err := v.f.WriteAt(buf[:whole], v.start+off); err != nil {
			return fmt.Errorf("lukstest: encrypt %s: %w", image, err)
		}
	}
	return v.f.Sync()
}

// Decrypt reads the whole data segment of the LUKS image and writes it
// decrypted to out, at offsets relative to the segment start.
func Decrypt(image string, h *luks.Header, key []byte, out io.WriterAt) error {
	v, err := openVolume(image, h, key, os.O_RDONLY)
	if err != nil {
		return fmt.Errorf("lukstest: decrypt %s: %w", image, err)
	}
	defer v.f.Close()
	buf := make([]byte, chunk)
	for off := int64(0); off < v.length; off += chunk {
		n := min(chunk, v.length-off)
		got, err := v.f.ReadAt(buf[:n], v.start+off)
		if int64(got) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("lukstest: decrypt %s: at %d: %w", image, off, err)
		}
		v.crypt(buf[:n], off, false)
		if _, err := out.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("lukstest: decrypt %s: %w", image, err)
		}
	}
	return nil
}
