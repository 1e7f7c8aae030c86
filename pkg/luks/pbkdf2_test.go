package luks

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"math/rand/v2"
	"testing"
	"time"
)

// TestPBKDF2 checks the byte-slice PBKDF2 against the standard library's
// for the hashes LUKS uses, short and over-long secrets, several blocks.
func TestPBKDF2(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, h := range []func() hash.Hash{sha1.New, sha256.New, sha256.New224, sha512.New, sha512.New384} {
		for _, n := range []int{1, 32, 64, 65, 200} {
			secret := make([]byte, n)
			salt := make([]byte, 32)
			for i := range secret {
				secret[i] = byte(r.Uint32())
			}
			for i := range salt {
				salt[i] = byte(r.Uint32())
			}
			for _, keyLen := range []int{20, 32, 100} {
				want, err := pbkdf2.Key(h, string(secret), salt, 1000, keyLen)
				if err != nil {
					t.Fatal(err)
				}
				got, err := PBKDF2(h, secret, salt, 1000, keyLen, 0)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%T secret %d bytes keyLen %d: got %x, %v; want %x", h(), n, keyLen, got, err, want)
				}
			}
		}
	}
}

// TestPBKDF2Limit: a hostile iteration count stops at the time limit.
func TestPBKDF2Limit(t *testing.T) {
	start := time.Now()
	_, err := PBKDF2(sha256.New, []byte("key"), make([]byte, 32), 1<<32-1, 32, 50*time.Millisecond)
	if !errors.Is(err, ErrTooSlow) {
		t.Fatalf("PBKDF2 = %v, want ErrTooSlow", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopped only after %s", took)
	}
}

// TestMACWipe: the keyed HMAC states are key-equivalent; wipe must clear
// every buffer that holds them.
func TestMACWipe(t *testing.T) {
	m, err := newMAC(sha256.New, bytes.Repeat([]byte{0xa5}, 64))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.sum(nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	bufs := [][]byte{m.innerSt, m.outerSt, m.innerHash[:cap(m.innerHash)]}
	m.wipe()
	for i, b := range bufs {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("buffer %d not wiped: %x", i, b)
		}
	}
}
