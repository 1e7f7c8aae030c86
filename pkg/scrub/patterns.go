package scrub

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"strings"
)

// Kind is what a scrubbed byte string is.
type Kind int

// The kinds, in the order reports list them.
const (
	// Key is a volume key as handed over: dm-crypt's copy, a keyring
	// payload.
	Key Kind = iota
	// Half is one of the keys a mode splits the volume key into: the two
	// halves of XTS, the cipher and tweak keys of LRW.
	Half
	// Salt is ESSIV's IV key, the hash of the volume key.
	Salt
	// Enc is an expanded AES encryption key schedule.
	Enc
	// Dec is an expanded AES decryption key schedule.
	Dec
	// Partial is the part of any of these at the edge of a page whose
	// neighbour in memory does not follow it in the dump.
	Partial
	numKinds
)

// String names the kind as reports do.
func (k Kind) String() string {
	switch k {
	case Key:
		return "key"
	case Half:
		return "half"
	case Salt:
		return "salt"
	case Enc:
		return "enc"
	case Dec:
		return "dec"
	case Partial:
		return "partial"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// noun names the kind in a sentence.
func (k Kind) noun() string {
	switch k {
	case Half:
		return "half key"
	case Salt:
		return "ESSIV salt"
	case Enc:
		return "encryption schedule"
	case Dec:
		return "decryption schedule"
	}
	return k.String()
}

// Kinds lists the kinds in report order.
func Kinds() []Kind { return []Kind{Key, Half, Salt, Enc, Dec, Partial} }

// Counts counts occurrences by kind.
type Counts [numKinds]uint64

// String is e.g. "key 2, half 0, salt 0, enc 4, dec 4, partial 0".
func (c Counts) String() string {
	var b strings.Builder
	for i, k := range Kinds() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, c[k])
	}
	return b.String()
}

// Total is the sum over the kinds.
func (c Counts) Total() uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// Volume is one volume's secret and how the kernel uses it.
type Volume struct {
	// Cipher is the dm-crypt cipher spec, e.g. "aes-xts-plain64" or
	// "aes-cbc-essiv:sha256".
	Cipher string
	// Key is the volume key.
	Key []byte
}

// MinLen is the shortest pattern scrubbed: shorter strings would hit
// unrelated memory too often, and every key ukdump maps is longer.
const MinLen = 16

// Secret is one byte string derived from a volume key.
type Secret struct {
	Kind  Kind
	Bytes []byte
}

// Derive returns the byte strings that New scrubs for v (before it leaves
// out short, non-random and repeated ones), for tests that plant them in
// memory or look for them in a dump. They are secrets: the caller wipes
// them.
func Derive(v Volume) ([]Secret, error) {
	out, _, err := derive(v, newAESTables())
	if err != nil {
		return nil, fmt.Errorf("scrub: %w", err)
	}
	ss := make([]Secret, len(out))
	for i, x := range out {
		ss[i] = Secret{Kind: x.kind, Bytes: x.b}
	}
	return ss, nil
}

// secret is one byte string to scrub, owned by the caller of derive.
type secret struct {
	kind Kind
	b    []byte
}

// derive returns the byte strings the kernel holds for v, as dm-crypt
// sets its key up: the key; for XTS its halves (the data key, then the
// tweak key), for LRW its cipher key and the 16-byte tweak key that ends
// it; for ESSIV the salt hash(key), which keys the IV cipher; and for AES
// the encryption and decryption schedules of every key a cipher instance
// is given (the data key or keys, and the salt). notes say what could not
// be derived, in words without key bytes. Every returned slice is new;
// the caller wipes them.
func derive(v Volume, t *aesTables) (out []secret, notes []string, err error) {
	defer func() {
		if err != nil {
			for _, s := range out {
				clear(s.b)
			}
			out = nil
		}
	}()
	parts := strings.Split(v.Cipher, "-")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, nil, fmt.Errorf("cipher %q is not cipher-mode[-iv]", v.Cipher)
	}
	cipher, mode, iv := parts[0], parts[1], ""
	if len(parts) == 3 {
		iv = parts[2]
	}
	key := v.Key
	out = append(out, secret{Key, clone(key)})
	// keyed are the keys that a block cipher instance is set up with.
	var keyed [][]byte
	switch mode {
	case "xts":
		if len(key)%2 != 0 {
			return out, nil, fmt.Errorf("%s with a %d-byte key", v.Cipher, len(key))
		}
		h := len(key) / 2
		keyed = [][]byte{key[:h], key[h:]}
		out = append(out, secret{Half, clone(key[:h])}, secret{Half, clone(key[h:])})
	case "lrw":
		if len(key) <= 16 {
			return out, nil, fmt.Errorf("%s with a %d-byte key", v.Cipher, len(key))
		}
		c := len(key) - 16
		keyed = [][]byte{key[:c]}
		out = append(out, secret{Half, clone(key[:c])}, secret{Half, clone(key[c:])})
	default:
		keyed = [][]byte{key}
	}
	if name, hash, ok := strings.Cut(iv, ":"); ok && name == "essiv" {
		salt, err := essivSalt(hash, key)
		if err != nil {
			notes = append(notes, err.Error())
		} else {
			out = append(out, secret{Salt, salt})
			keyed = append(keyed, salt)
		}
	}
	if cipher != "aes" {
		notes = append(notes, fmt.Sprintf("%s: key schedules are derived for aes only; the key itself is scrubbed", v.Cipher))
		return out, notes, nil
	}
	for _, k := range keyed {
		if !aesKeySize(len(k)) {
			return out, nil, fmt.Errorf("%s: %d-byte AES key", v.Cipher, len(k))
		}
		enc, dec, err := t.expand(k)
		if err != nil {
			return out, nil, err
		}
		out = append(out, secret{Enc, enc}, secret{Dec, dec})
	}
	return out, notes, nil
}

// essivSalt computes ESSIV's salt as crypto/essiv.c does: the digest of
// the whole key, which becomes the IV cipher's key. The hash's internal
// state is Go's and cannot be wiped; it lives in the crash kernel, never
// in the dump.
func essivSalt(hash string, key []byte) ([]byte, error) {
	switch hash {
	case "sha1":
		s := sha1.Sum(key)
		return moved(s[:]), nil
	case "sha224":
		s := sha256.Sum224(key)
		return moved(s[:]), nil
	case "sha256":
		s := sha256.Sum256(key)
		return moved(s[:]), nil
	case "sha384":
		s := sha512.Sum384(key)
		return moved(s[:]), nil
	case "sha512":
		s := sha512.Sum512(key)
		return moved(s[:]), nil
	}
	return nil, fmt.Errorf("essiv:%s: ukdump cannot compute %s, so the ESSIV salt is not scrubbed", hash, hash)
}

func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

// moved returns a copy of b and wipes b, a digest on the stack.
func moved(b []byte) []byte {
	c := clone(b)
	wipe(b)
	return c
}

// wipe overwrites b with zeros. It is not inlined so that the compiler
// cannot drop the stores as dead: b is often a local array never read
// again.
//
//go:noinline
func wipe(b []byte) { clear(b) }
