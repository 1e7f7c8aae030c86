package luks

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"time"
)

// ErrTooSlow reports a key derivation stopped at its time limit: a damaged
// or hostile header can ask for 2^32-1 iterations, hours of work in a
// crash kernel that must reboot within minutes.
var ErrTooSlow = errors.New("key derivation exceeds its time limit")

// PBKDF2 computes PBKDF2-HMAC(newHash, secret, salt, iter, keyLen) into a
// new slice, giving up with ErrTooSlow once limit has passed (0: no limit).
//
// Why not crypto/pbkdf2: it takes the secret as a string (a copy nobody can
// wipe) and its HMAC keeps the padded key in buffers of its own. Here every
// buffer that holds the secret or anything derived from it (the pads, the
// hash states after absorbing them, each U_i) is owned by this function and
// cleared before it returns; the hash objects are Reset. The only copy that
// survives is the result, which the caller wipes.
func PBKDF2(newHash func() hash.Hash, secret, salt []byte, iter, keyLen int, limit time.Duration) ([]byte, error) {
	if iter < 1 || keyLen < 1 {
		return nil, fmt.Errorf("PBKDF2: bad parameters (%d iterations, %d bytes)", iter, keyLen)
	}
	m, err := newMAC(newHash, secret)
	if err != nil {
		return nil, err
	}
	defer m.wipe()
	var deadline time.Time
	if limit > 0 {
		deadline = time.Now().Add(limit)
	}
	size := m.inner.Size()
	out := make([]byte, 0, (keyLen+size-1)/size*size)
	u := make([]byte, 0, size)
	t := make([]byte, size)
	defer clear(u[:cap(u)])
	defer clear(t)
	var ctr [4]byte
	for block := uint32(1); len(out) < keyLen; block++ {
		binary.BigEndian.PutUint32(ctr[:], block)
		if u, err = m.sum(u[:0], salt, ctr[:]); err != nil {
			return nil, err
		}
		copy(t, u)
		for i := 1; i < iter; i++ {
			// Reading the clock costs about as much as one iteration of a
			// small hash; every 4096 is a negligible overhead.
			if i&4095 == 0 && !deadline.IsZero() && time.Now().After(deadline) {
				clear(out[:cap(out)])
				return nil, fmt.Errorf("PBKDF2 with %d iterations: stopped after %d in %s: %w", iter, i, limit, ErrTooSlow)
			}
			if u, err = m.sum(u[:0], u); err != nil {
				clear(out[:cap(out)])
				return nil, err
			}
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
	}
	clear(out[keyLen:cap(out)])
	return out[:keyLen], nil
}

// mac is HMAC (RFC 2104) with its keyed states saved in buffers this
// package owns, so they can be wiped: the states after absorbing the inner
// and outer pads stand for the key.
type mac struct {
	inner, outer     hash.Hash
	innerSt, outerSt []byte
	innerHash        []byte
}

type stateHash interface {
	hash.Hash
	encoding.BinaryAppender
	encoding.BinaryUnmarshaler
}

func newMAC(newHash func() hash.Hash, key []byte) (*mac, error) {
	in, out := newHash(), newHash()
	si, ok1 := in.(stateHash)
	so, ok2 := out.(stateHash)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("PBKDF2: hash %T cannot save its state", in)
	}
	bs := in.BlockSize()
	pad := make([]byte, bs)
	defer clear(pad)
	if len(key) > bs {
		// An over-long key is hashed first (RFC 2104); the hash goes into
		// pad, which is wiped, and the hash object is reset.
		in.Write(key)
		in.Sum(pad[:0])
		in.Reset()
	} else {
		copy(pad, key)
	}
	m := &mac{inner: in, outer: out}
	for i := range pad {
		pad[i] ^= 0x36
	}
	// A whole block goes straight into the compression function, so no
	// copy of the pad stays in the hash's partial-block buffer.
	in.Write(pad)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	out.Write(pad)
	var err error
	if m.innerSt, err = si.AppendBinary(nil); err == nil {
		m.outerSt, err = so.AppendBinary(nil)
	}
	if err != nil {
		m.wipe()
		return nil, fmt.Errorf("PBKDF2: saving the HMAC state: %w", err)
	}
	return m, nil
}

// sum appends HMAC(key, parts...) to dst.
func (m *mac) sum(dst []byte, parts ...[]byte) ([]byte, error) {
	if err := m.inner.(stateHash).UnmarshalBinary(m.innerSt); err != nil {
		return nil, fmt.Errorf("PBKDF2: restoring the HMAC state: %w", err)
	}
	for _, p := range parts {
		m.inner.Write(p)
	}
	m.innerHash = m.inner.Sum(m.innerHash[:0])
	if err := m.outer.(stateHash).UnmarshalBinary(m.outerSt); err != nil {
		return nil, fmt.Errorf("PBKDF2: restoring the HMAC state: %w", err)
	}
	m.outer.Write(m.innerHash)
	return m.outer.Sum(dst), nil
}

func (m *mac) wipe() {
	clear(m.innerSt)
	clear(m.outerSt)
	clear(m.innerHash[:cap(m.innerHash)])
	m.inner.Reset()
	m.outer.Reset()
}
