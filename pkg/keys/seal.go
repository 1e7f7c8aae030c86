package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Sealing user keys. A user key that systemd-cryptsetup's link-volume-key=
// (or cryptsetup --link-vk-to-keyring) leaves in root's user keyring is
// readable by every process of uid 0, capabilities or not: any of them can
// link @u into its session keyring, and possession is enough to read. The
// initrd transport needs the key's bytes at every load, so the key cannot
// simply be dropped after the first. A sealed key is the same key object,
// taken out of @u into ukdump's own keyring there and changed so that:
//
//   - it belongs to SealUID (65535, which Debian policy and systemd never
//     assign), and its permissions are "other: view, setattr" only: no
//     process possesses it (nobody may search for it), no process of uid 0
//     or SealUID may read, link, search or change it, and no process may
//     change its permissions or owner except one with CAP_SYS_ADMIN
//     (keyctl_setperm and keyctl_chown let only the owner or
//     CAP_SYS_ADMIN do that);
//   - to read it, ukdump (with CAP_SYS_ADMIN) grants its owner view and
//     read, reads it on a thread whose filesystem uid is SealUID
//     (CAP_SETUID), and takes the grant back: for those microseconds a
//     process whose fsuid is SealUID could read it too, which no account
//     has and only CAP_SETUID gives.
//
// The keyring code of the kernel has no capability check on reading, which
// is why the seal goes through ownership: see security/keys/permission.c
// and keyctl.c (key_task_permission, keyctl_setperm_key).

// Seal is where and as whom keys are sealed.
type Seal struct {
	// Ring is the description of the keyring, linked into root's user
	// keyring, that holds the sealed keys.
	Ring string
	// UID owns the sealed keys and the ring.
	UID int
}

// SealUID is the owner of sealed keys: 65535 ((uid_t)-1 of 16 bits), which
// Debian policy (9.2.2) and systemd reserve and never assign.
const SealUID = 65535

// DefaultSeal is ukdump's.
func DefaultSeal() Seal { return Seal{Ring: "ukdump:sealed", UID: SealUID} }

// Key permission bits (linux/key.h): possessor, user (owner), group, other.
const (
	permView    = 0x01
	permRead    = 0x02
	permWrite   = 0x04
	permSearch  = 0x08
	permLink    = 0x10
	permSetattr = 0x20
	permAll     = 0x3f
	userShift   = 16
)

const (
	// permSealed: what everyone may do with a sealed key: see that it is
	// there (its description names the volume, not the key) and, with
	// CAP_SYS_ADMIN only, change its permissions.
	permSealed = permView | permSetattr
	// permReading is permSealed plus view and read for the owner, while
	// ukdump reads it as SealUID.
	permReading = permSealed | (permView|permRead)<<userShift
	// permRing: only SealUID may search, list and change the ring.
	permRing = permAll << userShift
)

// ErrNotSealed means no sealed key of that description is there.
var ErrNotSealed = errors.New("no sealed key")

// sealThread runs f on a goroutine locked to its own OS thread, which
// ends with it: the thread's filesystem uid changes while f runs, and no
// other goroutine may ever run with it.
func sealThread(f func(*fsThread) error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with this goroutine.
		t := &fsThread{}
		err := f(t)
		if t.changed {
			if rerr := t.as(0); rerr != nil {
				// The thread dies with the goroutine anyway.
				err = errors.Join(err, rerr)
			}
		}
		done <- err
	}()
	return <-done
}

// fsThread is the locked thread of sealThread.
type fsThread struct{ changed bool }

// as sets the thread's filesystem uid and checks that it took: setfsuid
// returns the previous value, not an error, when refused.
func (t *fsThread) as(uid int) error {
	t.changed = true
	unix.Setfsuid(uid)
	if got, _ := unix.SetfsuidRetUid(-1); got != uid {
		return fmt.Errorf("keys: setfsuid %d: refused (still %d): needs CAP_SETUID", uid, got)
	}
	return nil
}

// ring finds the seal's keyring in root's user keyring, as the ring's
// owner (only it may search there); with create, it makes it when absent.
func (s Seal) ring(t *fsThread, create bool) (int, error) {
	if err := t.as(s.UID); err != nil {
		return 0, err
	}
	id, err := unix.KeyctlSearch(UserKeyring, "keyring", s.Ring, 0)
	if err == nil || !create || !errors.Is(err, unix.ENOKEY) {
		if err != nil {
			return 0, fmt.Errorf("keys: keyring %q: %w", s.Ring, err)
		}
		return id, nil
	}
	// Made by root, then given to the owner: chown needs CAP_SYS_ADMIN,
	// and after it only the owner reaches the ring.
	if err := t.as(0); err != nil {
		return 0, err
	}
	id, err = unix.AddKey("keyring", s.Ring, nil, UserKeyring)
	if err != nil {
		return 0, fmt.Errorf("keys: making keyring %q: %w", s.Ring, err)
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_CHOWN, id, s.UID, s.UID, 0); err != nil {
		return 0, errors.Join(fmt.Errorf("keys: keyring %q: chown: %w", s.Ring, err), unlink(id, UserKeyring))
	}
	if err := unix.KeyctlSetperm(id, permRing); err != nil {
		return 0, errors.Join(fmt.Errorf("keys: keyring %q: setperm: %w", s.Ring, err), unlink(id, UserKeyring))
	}
	return id, nil
}

func unlink(id, ring int) error {
	if _, err := unix.KeyctlInt(unix.KEYCTL_UNLINK, id, ring, 0, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("keys: unlink key %d from %d: %w", id, ring, err)
	}
	return nil
}

// Seal moves the user key id into the seal's keyring and seals it (see
// above). A sealed key of the same description there is replaced (a
// keyring holds one key of a type and description). The key leaves the
// session and user keyrings, so that systemd-cryptsetup can link a new
// one there when it opens the volume again. On an error the key may stay
// where it was, readable as before.
func (s Seal) Seal(id int) error {
	return sealThread(func(t *fsThread) error {
		ring, err := s.ring(t, true)
		if err != nil {
			return err
		}
		// As the ring's owner: it may write the ring, and possesses the
		// key through root's user keyring.
		if err := t.as(s.UID); err != nil {
			return err
		}
		if _, err := unix.KeyctlInt(unix.KEYCTL_LINK, id, ring, 0, 0); err != nil {
			return fmt.Errorf("keys: sealing key %d: link: %w", id, err)
		}
		if _, err := unix.KeyctlInt(unix.KEYCTL_CHOWN, id, s.UID, s.UID, 0); err != nil {
			return errors.Join(fmt.Errorf("keys: sealing key %d: chown: %w", id, err), unlink(id, ring))
		}
		if err := unix.KeyctlSetperm(id, permSealed); err != nil {
			return fmt.Errorf("keys: sealing key %d: setperm: %w", id, err)
		}
		if err := t.as(0); err != nil {
			return err
		}
		return errors.Join(unlink(id, UserKeyring), unlink(id, SessionKeyring))
	})
}

// FindSealed returns the serial of the sealed user key desc.
func (s Seal) FindSealed(desc string) (int, error) {
	var found int
	err := sealThread(func(t *fsThread) error {
		ring, err := s.ring(t, false)
		if errors.Is(err, unix.ENOKEY) {
			return fmt.Errorf("keys: user key %q: %w", desc, ErrNotSealed)
		}
		if err != nil {
			return err
		}
		ids, err := ringKeys(ring)
		if err != nil {
			return err
		}
		// Describing needs view, which others have and the owner not.
		if err := t.as(0); err != nil {
			return err
		}
		for _, id := range ids {
			d, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, id)
			if err != nil {
				continue // gone meanwhile
			}
			// "type;uid;gid;perm;description"
			f := strings.SplitN(d, ";", 5)
			if len(f) == 5 && f[0] == "user" && f[4] == desc {
				found = id
				return nil
			}
		}
		return fmt.Errorf("keys: user key %q: %w", desc, ErrNotSealed)
	})
	return found, err
}

// ringKeys lists the serials linked in a keyring: KEYCTL_READ of a
// keyring gives them as 32-bit integers.
func ringKeys(ring int) ([]int, error) {
	buf, err := Read(ring)
	if err != nil {
		return nil, err
	}
	var ids []int
	for i := 0; i+4 <= len(buf); i += 4 {
		ids = append(ids, int(int32(binary.NativeEndian.Uint32(buf[i:]))))
	}
	return ids, nil
}

// ReadSealed returns the payload of the sealed key id; the caller wipes
// it. The owner's read permission exists only while this runs.
func (s Seal) ReadSealed(id int) ([]byte, error) {
	var key []byte
	err := sealThread(func(t *fsThread) error {
		if err := t.as(0); err != nil {
			return err
		}
		if err := unix.KeyctlSetperm(id, permReading); err != nil {
			return fmt.Errorf("keys: unsealing key %d: %w (needs CAP_SYS_ADMIN)", id, err)
		}
		if err := t.as(s.UID); err != nil {
			return errors.Join(err, unix.KeyctlSetperm(id, permSealed))
		}
		var err error
		key, err = Read(id)
		// Back as root, who (with CAP_SYS_ADMIN) may set the permissions.
		if aerr := t.as(0); aerr != nil {
			return errors.Join(err, aerr)
		}
		if perr := unix.KeyctlSetperm(id, permSealed); perr != nil {
			Wipe(key)
			key = nil
			return errors.Join(err, fmt.Errorf("keys: sealing key %d again: %w", id, perr))
		}
		return err
	})
	return key, err
}

// Forget destroys the seal's keyring and with it every sealed key: for
// the removal of ukdump. No keyring is no error.
func (s Seal) Forget() error {
	return sealThread(func(t *fsThread) error {
		ring, err := s.ring(t, false)
		if errors.Is(err, unix.ENOKEY) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := unix.KeyctlInt(unix.KEYCTL_CLEAR, ring, 0, 0, 0); err != nil {
			return fmt.Errorf("keys: clearing keyring %q: %w", s.Ring, err)
		}
		if err := t.as(0); err != nil {
			return err
		}
		return unlink(ring, UserKeyring)
	})
}
