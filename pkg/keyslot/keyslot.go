// Package keyslot unlocks a LUKS keyslot with a passphrase and returns the
// volume key, in the first kernel only: it runs the keyslot KDF (Argon2
// needs up to a GiB or more, which only the first kernel has), decrypts the
// keyslot area and merges the anti-forensic stripes.
//
// Why not anatol/luks.go: it hands the key only to device-mapper, so
// reading it back meant a temporary read-write mapping whose table carried
// the key as hex, whose key copy was never cleared, and which outlived an
// interrupted ukdump. This package works on the header and the keyslot
// area alone, needs no device-mapper, and wipes every buffer it owns.
//
// What it cannot wipe: the expanded AES schedule of the area key inside
// crypto/aes, and Argon2's work memory inside x/crypto/argon2. Both are
// derived from the passphrase, not the volume key, live only in this
// short-lived first-kernel process, and are unreachable once Unlock
// returns.
package keyslot

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/xts"

	"github.com/ukdump/ukdump/pkg/luks"
)

// ErrNoKeyslot means no keyslot opened with the passphrase.
var ErrNoKeyslot = errors.New("no keyslot opens with this passphrase")

// Limits of what a header may ask of the KDF. cryptsetup caps Argon2 memory
// at 4 GiB and threads at 4; a header asking for more is damaged.
const (
	maxArgonMemoryKiB = 4 << 20
	maxArgonThreads   = 4
	maxArgonTime      = 1 << 16
	kdfTimeLimit      = 5 * time.Minute
	sectorSize        = 512
)

// Unlock tries the passphrase on each usable keyslot, high priority first,
// and returns the volume key checked against the header digest. r reads the
// LUKS device (or image) holding h. The caller wipes the key.
func Unlock(r io.ReaderAt, h *luks.Header, pass []byte) ([]byte, error) {
	slots := append([]luks.Keyslot(nil), h.Keyslots...)
	sort.SliceStable(slots, func(i, j int) bool { return slots[i].Priority > slots[j].Priority })
	var errs []error
	tried := 0
	for _, ks := range slots {
		if ks.Priority == 0 {
			continue // "ignore": cryptsetup tries it only when named
		}
		tried++
		key, err := unlockSlot(r, h, ks, pass)
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, luks.ErrWrongKey) {
			errs = append(errs, fmt.Errorf("keyslot %d: %w", ks.ID, err))
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("keyslot: %s: no usable keyslot for the volume key", h.UUID)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("keyslot: %s: %w (%w)", h.UUID, ErrNoKeyslot, errors.Join(errs...))
	}
	return nil, fmt.Errorf("keyslot: %s: %w", h.UUID, ErrNoKeyslot)
}

func unlockSlot(r io.ReaderAt, h *luks.Header, ks luks.Keyslot, pass []byte) ([]byte, error) {
	if ks.KeySize != h.KeySize && h.KeySize != 0 {
		return nil, fmt.Errorf("key size %d, the volume's is %d", ks.KeySize, h.KeySize)
	}
	areaKey, err := derive(ks.KDF, pass, ks.AreaKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(areaKey)
	n := ks.KeySize * ks.Stripes
	material := make([]byte, (n+sectorSize-1)/sectorSize*sectorSize)
	defer clear(material)
	if ks.AreaSize < uint64(len(material)) {
		return nil, fmt.Errorf("area of %d bytes cannot hold %d stripes", ks.AreaSize, ks.Stripes)
	}
	if _, err := r.ReadAt(material, int64(ks.AreaOffset)); err != nil {
		return nil, fmt.Errorf("reading the keyslot area at %d: %w", ks.AreaOffset, err)
	}
	if err := decrypt(ks.AreaCipher, areaKey, material); err != nil {
		return nil, err
	}
	newHash, err := luks.Hash(ks.AFHash)
	if err != nil {
		return nil, err
	}
	key, err := afMerge(material[:n], ks.KeySize, ks.Stripes, newHash)
	if err != nil {
		return nil, err
	}
	if err := h.VerifyKey(key); err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}

// derive runs the keyslot KDF.
func derive(k luks.KDF, pass []byte, keyLen int) ([]byte, error) {
	if len(k.Salt) == 0 {
		return nil, errors.New("KDF without a salt")
	}
	switch k.Type {
	case "pbkdf2":
		newHash, err := luks.Hash(k.Hash)
		if err != nil {
			return nil, err
		}
		return luks.PBKDF2(newHash, pass, k.Salt, k.Iterations, keyLen, kdfTimeLimit)
	case "argon2i", "argon2id":
		if k.Time < 1 || k.Time > maxArgonTime || k.MemoryKiB < 8 || k.MemoryKiB > maxArgonMemoryKiB ||
			k.Threads < 1 || k.Threads > maxArgonThreads {
			return nil, fmt.Errorf("%s with time %d, memory %d KiB, %d threads: out of cryptsetup's bounds", k.Type, k.Time, k.MemoryKiB, k.Threads)
		}
		f := argon2.IDKey
		if k.Type == "argon2i" {
			f = argon2.Key
		}
		return f(pass, k.Salt, uint32(k.Time), uint32(k.MemoryKiB), uint8(k.Threads), uint32(keyLen)), nil
	}
	return nil, fmt.Errorf("KDF %q: %w", k.Type, luks.ErrUnsupported)
}

// decrypt decrypts the keyslot area in place, sector by sector, with IVs
// counted from the start of the area, as cryptsetup writes it. Only AES is
// here (the standard library's); other ciphers are refused by name.
func decrypt(spec string, key, buf []byte) error {
	name, mode, ok := strings.Cut(spec, "-")
	if !ok || name != "aes" {
		return fmt.Errorf("keyslot cipher %q: %w", spec, luks.ErrUnsupported)
	}
	switch mode {
	case "xts-plain64", "xts-plain":
		c, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			return fmt.Errorf("keyslot cipher %s: %w", spec, err)
		}
		for s := 0; s < len(buf)/sectorSize; s++ {
			sec := buf[s*sectorSize : (s+1)*sectorSize]
			c.Decrypt(sec, sec, uint64(s))
		}
		return nil
	case "cbc-plain", "cbc-plain64", "cbc-essiv:sha256":
		b, err := aes.NewCipher(key)
		if err != nil {
			return fmt.Errorf("keyslot cipher %s: %w", spec, err)
		}
		ivc := cipher.Block(nil)
		if mode == "cbc-essiv:sha256" {
			salt := sha256.Sum256(key)
			defer clear(salt[:])
			if ivc, err = aes.NewCipher(salt[:]); err != nil {
				return fmt.Errorf("keyslot cipher %s: %w", spec, err)
			}
		}
		var iv [aes.BlockSize]byte
		for s := 0; s < len(buf)/sectorSize; s++ {
			clear(iv[:])
			binary.LittleEndian.PutUint64(iv[:], uint64(s))
			if ivc != nil {
				ivc.Encrypt(iv[:], iv[:])
			}
			sec := buf[s*sectorSize : (s+1)*sectorSize]
			cipher.NewCBCDecrypter(b, iv[:]).CryptBlocks(sec, sec)
		}
		return nil
	}
	return fmt.Errorf("keyslot cipher %q: %w", spec, luks.ErrUnsupported)
}

// afMerge undoes LUKS's anti-forensic split: the key is the last stripe
// XORed with the diffused XOR of all stripes before it.
func afMerge(material []byte, keySize, stripes int, newHash func() hash.Hash) ([]byte, error) {
	if keySize < 1 || stripes < 1 || len(material) != keySize*stripes {
		return nil, fmt.Errorf("anti-forensic split of %d bytes is not %d stripes of %d", len(material), stripes, keySize)
	}
	d := make([]byte, keySize)
	for i := 0; i < stripes-1; i++ {
		xor(d, material[i*keySize:(i+1)*keySize])
		diffuse(d, newHash)
	}
	xor(d, material[(stripes-1)*keySize:])
	return d, nil
}

func xor(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}

// diffuse replaces each hash-sized block of d by the hash of its index
// (big-endian) and itself, the last block cut to what is left.
func diffuse(d []byte, newHash func() hash.Hash) {
	h := newHash()
	size := h.Size()
	sum := make([]byte, 0, size)
	defer clear(sum[:cap(sum)])
	var idx [4]byte
	for i := 0; i*size < len(d); i++ {
		blk := d[i*size : min((i+1)*size, len(d))]
		h.Reset()
		binary.BigEndian.PutUint32(idx[:], uint32(i))
		h.Write(idx[:])
		h.Write(blk)
		sum = h.Sum(sum[:0])
		copy(blk, sum)
	}
	h.Reset()
}
