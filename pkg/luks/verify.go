package luks

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"
	"strings"
	"time"
)

// MaxVerifyTime bounds one digest check. cryptsetup sizes the digest's
// iterations to about an eighth of a second on the machine that formatted
// the volume; even under emulation or on a slow crash kernel CPU that is a
// few seconds. A header asking for far more is damaged or hostile, and
// the crash kernel must go on to its failure action instead of computing
// for hours.
const MaxVerifyTime = 60 * time.Second

// Hash returns the hash a LUKS header names (hash_spec, digest hash,
// csum_alg, keyslot KDF and AF hash).
func Hash(name string) (func() hash.Hash, error) { return hashByName(name) }

// hashByName maps a LUKS hash name (hash_spec, digest hash, csum_alg) to
// its implementation. Only the SHA family is here: it is what cryptsetup
// writes by default and what the standard library has. ripemd160,
// whirlpool, blake2 or streebog headers get an error naming the hash.
func hashByName(name string) (func() hash.Hash, error) {
	switch strings.ToLower(name) {
	case "sha1":
		return sha1.New, nil
	case "sha224":
		return sha256.New224, nil
	case "sha256":
		return sha256.New, nil
	case "sha384":
		return sha512.New384, nil
	case "sha512":
		return sha512.New, nil
	}
	return nil, fmt.Errorf("hash %q: %w", name, ErrUnsupported)
}

// VerifyKey checks that key is the volume key of this header: PBKDF2 over
// the key with the digest's hash, salt and iterations must give the stored
// digest. It never touches a keyslot, so its cost is the digest's
// iteration count whatever the keyslot KDF is (Argon2 included).
//
// A key of the wrong length or a mismatch gives an error wrapping
// ErrWrongKey; a digest this package cannot compute one wrapping
// ErrUnsupported; one that takes longer than MaxVerifyTime one wrapping
// ErrTooSlow.
func (h *Header) VerifyKey(key []byte) error {
	return h.VerifyKeyWithin(key, MaxVerifyTime)
}

// VerifyKeyWithin is VerifyKey with its own time limit.
func (h *Header) VerifyKeyWithin(key []byte, limit time.Duration) error {
	d := h.Digest
	switch d.Type {
	case "pbkdf2":
	case "":
		return fmt.Errorf("luks: %s: no key digest for segment 0: %w", h.UUID, ErrUnsupported)
	default:
		return fmt.Errorf("luks: %s: digest type %q: %w", h.UUID, d.Type, ErrUnsupported)
	}
	if h.KeySize != 0 && len(key) != h.KeySize {
		return fmt.Errorf("luks: %s: key is %d bytes, header wants %d: %w", h.UUID, len(key), h.KeySize, ErrWrongKey)
	}
	if len(key) == 0 {
		return fmt.Errorf("luks: %s: empty key: %w", h.UUID, ErrWrongKey)
	}
	newHash, err := hashByName(d.Hash)
	if err != nil {
		return fmt.Errorf("luks: %s: key digest: %w", h.UUID, err)
	}
	// cryptsetup's PBKDF2_digest_verify: a LUKS2 digest is either 20 bytes
	// (LUKS1 heritage) or the hash's own size; LUKS1's is always 20.
	n := len(d.Value)
	if n < digestMinSize || n > digestMaxSize || (n != digestMinSize && n != newHash().Size()) {
		return fmt.Errorf("luks: %s: %d-byte digest does not fit hash %s", h.UUID, n, d.Hash)
	}
	if d.Iterations < 1 || len(d.Salt) == 0 {
		return fmt.Errorf("luks: %s: key digest without iterations or salt", h.UUID)
	}
	got, err := PBKDF2(newHash, key, d.Salt, d.Iterations, n, limit)
	if err != nil {
		return fmt.Errorf("luks: %s: key digest: %w", h.UUID, err)
	}
	defer clear(got)
	if subtle.ConstantTimeCompare(got, d.Value) != 1 {
		return fmt.Errorf("luks: %s: %w", h.UUID, ErrWrongKey)
	}
	return nil
}
