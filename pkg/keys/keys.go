// Package keys moves LUKS volume keys through the kernel keyring and the
// kernel's crash_dm_crypt_keys configfs interface, and wipes key bytes
// after use.
//
// Key bytes live only in []byte buffers owned by the caller, never in Go
// strings, so that Wipe can overwrite every copy ukdump makes.
package keys

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Description is the keyring description under which systemd's crypttab
// option link-volume-key= and kdump-utils leave a volume key for kdump.
func Description(luksUUID string) string {
	return "kdump-cryptsetup:vk-" + luksUUID
}

// LegacyDescription is the older description cryptsetup used.
func LegacyDescription(luksUUID string) string {
	return "cryptsetup:" + luksUUID
}

// Wipe overwrites b with zeros.
func Wipe(b []byte) {
	clear(b)
}

// Keyring IDs understood by the keyctl calls.
const (
	ProcessKeyring = unix.KEY_SPEC_PROCESS_KEYRING
	SessionKeyring = unix.KEY_SPEC_SESSION_KEYRING
	UserKeyring    = unix.KEY_SPEC_USER_KEYRING
)

// ErrNoKey means no key of that type and description is reachable.
var ErrNoKey = errors.New("no such key")

// Find searches the keyrings a process can reach (thread, process, session,
// user) for a key of the given type ("logon" or "user"), as request_key in
// the kernel would, and returns its serial.
func Find(keyType, desc string) (int, error) {
	for _, ring := range []int{unix.KEY_SPEC_THREAD_KEYRING, ProcessKeyring, SessionKeyring, UserKeyring} {
		id, err := unix.KeyctlSearch(ring, keyType, desc, 0)
		if err == nil {
			return id, nil
		}
	}
	return 0, fmt.Errorf("keys: %s key %q: %w", keyType, desc, ErrNoKey)
}

// Add adds a key of keyType ("logon" or "user") with the payload to ring and
// returns its serial. The kernel copies the payload; the caller wipes it.
func Add(keyType, desc string, payload []byte, ring int) (int, error) {
	id, err := unix.AddKey(keyType, desc, payload, ring)
	if err != nil {
		return 0, fmt.Errorf("keys: add %s key %q: %w", keyType, desc, err)
	}
	return id, nil
}

// Read returns the payload of a user key. Logon keys cannot be read back,
// by design.
func Read(id int) ([]byte, error) {
	n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, id, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("keys: read key %d: %w", id, err)
	}
	buf := make([]byte, n)
	m, err := unix.KeyctlBuffer(unix.KEYCTL_READ, id, buf, 0)
	if err != nil || m != n {
		Wipe(buf)
		if err == nil {
			err = fmt.Errorf("key changed size while reading (%d, then %d bytes)", n, m)
		}
		return nil, fmt.Errorf("keys: read key %d: %w", id, err)
	}
	return buf, nil
}

// Invalidate destroys a key at once, wherever it is linked.
func Invalidate(id int) error {
	if _, err := unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0); err != nil {
		return fmt.Errorf("keys: invalidate key %d: %w", id, err)
	}
	return nil
}

// Reference is how dm-crypt names a key in the keyring instead of taking its
// bytes in the table: ":<size>:<type>:<description>".
func Reference(size int, keyType, desc string) string {
	return fmt.Sprintf(":%d:%s:%s", size, keyType, desc)
}

// IsReference reports whether a dm-crypt table key field is a keyring
// reference (":<size>:<type>:<description>", as Reference makes) rather
// than hex key bytes.
func IsReference(field string) bool {
	return strings.HasPrefix(field, ":") && strings.Count(field, ":") >= 3
}
