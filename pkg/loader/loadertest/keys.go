package loadertest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/luks"
)

// Keys is a fake of what the loader reads volume keys from (its
// KeyStore): keyring keys by type and description, and live dm-crypt
// tables by mapping name. It keeps every buffer it hands out, so that a
// test can check that they were wiped.
type Keys struct {
	ring []ringKey
	// Tables are the keys of live tables; Refs the keyring references of
	// tables that hold no key.
	Tables map[string][]byte
	Refs   map[string]string
	// NoHMAC is a kernel that cannot hash with a keyring key; Unreadable
	// a process that does not possess the user keys it finds.
	NoHMAC, Unreadable bool
	// SealErr, when set, is what sealing a key fails with.
	SealErr error
	handed  [][]byte
}

type ringKey struct {
	typ, desc string
	payload   []byte
	// sealed keys are found only by FindSealed and read only by
	// ReadSealed, as keys.Seal leaves them.
	sealed bool
}

// Add puts a key of typ ("logon" or "user") in the keyring.
func (f *Keys) Add(typ, desc string, payload []byte) {
	f.ring = append(f.ring, ringKey{typ: typ, desc: desc, payload: bytes.Clone(payload)})
}

// Find returns a key's serial, as keys.Find.
func (f *Keys) Find(typ, desc string) (int, error) {
	for i, k := range f.ring {
		if k.typ == typ && k.desc == desc && !k.sealed {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("keys: %s key %q: %w", typ, desc, keys.ErrNoKey)
}

// Seal seals a user key, as keys.Seal.
func (f *Keys) Seal(id int) error {
	if f.SealErr != nil {
		return f.SealErr
	}
	f.ring[id-1].sealed = true
	return nil
}

// Sealed reports whether the user key desc is sealed.
func (f *Keys) Sealed(desc string) bool {
	_, err := f.FindSealed(desc)
	return err == nil
}

// FindSealed returns a sealed key's serial, as keys.FindSealed.
func (f *Keys) FindSealed(desc string) (int, error) {
	for i, k := range f.ring {
		if k.typ == "user" && k.desc == desc && k.sealed {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("keys: user key %q: %w", desc, keys.ErrNotSealed)
}

// ReadSealed returns a copy of a sealed key's payload, as keys.ReadSealed.
func (f *Keys) ReadSealed(id int) ([]byte, error) {
	if !f.ring[id-1].sealed {
		return nil, fmt.Errorf("keys: key %d is not sealed", id)
	}
	return f.hand(f.ring[id-1].payload), nil
}

// Read returns a copy of a user key's payload, as keys.Read.
func (f *Keys) Read(id int) ([]byte, error) {
	k := f.ring[id-1]
	switch {
	case k.sealed:
		return nil, fmt.Errorf("keys: read key %d: permission denied", id)
	case f.Unreadable:
		return nil, fmt.Errorf("keys: read key %d: permission denied", id)
	case k.typ != "user":
		return nil, fmt.Errorf("keys: read key %d: operation not supported", id)
	}
	return f.hand(k.payload), nil
}

// PBKDF2 derives with a key of the keyring, as keys.PBKDF2.
func (f *Keys) PBKDF2(id int, hash string, salt []byte, iter, keyLen int, limit time.Duration) ([]byte, error) {
	if f.NoHMAC {
		return nil, keys.ErrNoKernelHMAC
	}
	h, err := luks.Hash(hash)
	if err != nil {
		return nil, err
	}
	return luks.PBKDF2(h, f.ring[id-1].payload, salt, iter, keyLen, limit)
}

// TableKey returns a copy of a live table's key, as dm.TableKey.
func (f *Keys) TableKey(name string) ([]byte, string, error) {
	if ref, ok := f.Refs[name]; ok {
		return nil, ref, fmt.Errorf("dm: %s: %w", name, dm.ErrKeyInKeyring)
	}
	if k, ok := f.Tables[name]; ok {
		return f.hand(k), "", nil
	}
	return nil, "", errors.New("dm: open /dev/mapper/control: no such file or directory")
}

func (f *Keys) hand(b []byte) []byte {
	c := bytes.Clone(b)
	f.handed = append(f.handed, c)
	return c
}

// AllWiped fails the test when a buffer handed out still holds a byte.
func (f *Keys) AllWiped(t testing.TB) {
	t.Helper()
	for i, b := range f.handed {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("key buffer %d handed out was not wiped", i)
		}
	}
}
