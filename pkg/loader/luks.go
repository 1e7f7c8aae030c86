package loader

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/keyslot"
	"github.com/ukdump/ukdump/pkg/luks"
)

// Volume is a LUKS device under the dump target.
type Volume struct {
	// UUID is the LUKS UUID.
	UUID string
	// Name is the mapping's name (e.g. luks-<uuid>); the crash kernel
	// reuses it.
	Name string
	// Mapped is the kernel name of the dm-crypt device (dm-0), Backing the
	// device node holding the LUKS header.
	Mapped, Backing string
	Header          *luks.Header
}

// findVolumes returns the LUKS volumes in the stack of the target device,
// lowest first, because the crash kernel must open them in that order.
func findVolumes(sys blockdev.Sys, stack []string) ([]Volume, error) {
	var vols []Volume
	for i := len(stack) - 1; i >= 0; i-- {
		mapped := stack[i]
		name, err := os.ReadFile(filepath.Join(sys.SysDir, "class", "block", mapped, "dm", "name"))
		if err != nil {
			continue // not a device-mapper device
		}
		slaves, _ := os.ReadDir(filepath.Join(sys.SysDir, "class", "block", mapped, "slaves"))
		for _, s := range slaves {
			path := filepath.Join(sys.DevDir, s.Name())
			info, err := blockdev.ProbePath(path)
			if err != nil || info.Type != "crypto_LUKS" {
				continue
			}
			h, err := luks.ReadFile(path)
			if err != nil {
				return nil, err
			}
			vols = append(vols, Volume{UUID: h.UUID, Name: strings.TrimSpace(string(name)), Mapped: mapped, Backing: path, Header: h})
		}
	}
	return vols, nil
}

// TargetVolumes returns the LUKS volumes under the target t, lowest first:
// what load hands keys over for, for the verbs that only look at them.
func TargetVolumes(sys blockdev.Sys, t Target) ([]Volume, error) {
	stack, err := sys.Stack(t.Device.Name)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	return findVolumes(sys, stack)
}

// KeySource is where a volume key came from.
type KeySource string

// The key sources, in the order findKey tries them.
const (
	FromLogonKey   KeySource = "logon key"
	FromUserKey    KeySource = "user key"
	FromTable      KeySource = "dm-crypt table"
	FromPassphrase KeySource = "passphrase"
)

// Key is a volume key on its way to the crash kernel: either the
// description of a logon key the kernel transport can name, or the key
// bytes themselves. Bytes are wiped by Wipe.
type Key struct {
	Volume Volume
	// LogonDesc names a logon key that the kernel can copy.
	LogonDesc string
	// Bytes is the key itself when it was obtained from a source that gives it.
	Bytes []byte
	From  KeySource
	// Source says where the key came from, for messages and status.
	Source string
}

// Wipe clears the key bytes.
func (k *Key) Wipe() { keys.Wipe(k.Bytes) }

// KeyStore is what findKey asks the running kernel for: keys in the
// keyrings the loader reaches, and the key of a live dm-crypt table. Tests
// give a fake; the real one is hostKeys.
type KeyStore interface {
	// Find returns the serial of a key of keyType and desc (keys.Find).
	Find(keyType, desc string) (int, error)
	// Read returns the payload of a user key; the caller wipes it.
	Read(id int) ([]byte, error)
	// PBKDF2 is keys.PBKDF2: the kernel derives with a key it holds, so a
	// logon key is checked without its bytes leaving the kernel.
	PBKDF2(id int, hash string, salt []byte, iter, keyLen int, limit time.Duration) ([]byte, error)
	// TableKey is dm.TableKey; the caller wipes the key.
	TableKey(name string) (key []byte, ref string, err error)
	// Seal, FindSealed and ReadSealed are keys.Seal's: a user key taken
	// out of reach of every process without CAP_SYS_ADMIN, and read back.
	Seal(id int) error
	FindSealed(desc string) (int, error)
	ReadSealed(id int) ([]byte, error)
}

// hostKeys is the running kernel.
type hostKeys struct{}

func (hostKeys) Find(keyType, desc string) (int, error) { return keys.Find(keyType, desc) }
func (hostKeys) Read(id int) ([]byte, error)            { return keys.Read(id) }
func (hostKeys) Seal(id int) error                      { return keys.DefaultSeal().Seal(id) }
func (hostKeys) FindSealed(desc string) (int, error)    { return keys.DefaultSeal().FindSealed(desc) }
func (hostKeys) ReadSealed(id int) ([]byte, error)      { return keys.DefaultSeal().ReadSealed(id) }
func (hostKeys) TableKey(name string) ([]byte, string, error) {
	return dm.TableKey(name)
}
func (hostKeys) PBKDF2(id int, hash string, salt []byte, iter, keyLen int, limit time.Duration) ([]byte, error) {
	return keys.PBKDF2(id, hash, salt, iter, keyLen, limit)
}

// KeyOptions are the sources a user can add on the command line.
type KeyOptions struct {
	// KeyFile holds the passphrase of a keyslot; "-" is standard input.
	KeyFile string
	// Prompt asks for the passphrase of a volume; nil when there is no terminal.
	Prompt func(v Volume) ([]byte, error)
	// Log receives one line per source tried.
	Log io.Writer
	// Store is where keyring keys and live tables are read; nil is the
	// running kernel.
	Store KeyStore

	pass *passphrases
}

func (o KeyOptions) store() KeyStore {
	if o.Store == nil {
		return hostKeys{}
	}
	return o.Store
}

// findKey tries the key sources in order: a logon key (kernel transport)
// or a user key in a keyring the loader can reach, the hex key of the live
// dm-crypt table, then a passphrase. Each is checked against the header
// digest before it is used, so a wrong key fails here, naming the device,
// and not in the crash kernel.
func findKey(v Volume, t config.Transport, o KeyOptions) (*Key, error) {
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Log, "  %s: "+format+"\n", append([]any{v.Name}, args...)...)
	}
	k, err := liveKey(v, t, o.store(), say, true)
	if k != nil || err != nil {
		return k, err
	}
	pass, err := o.pass.get(v)
	if err != nil {
		return nil, fmt.Errorf("loader: %s (LUKS %s): no key: no logon or user key %s, no key in the live dm-crypt table, and %w",
			v.Name, v.UUID, keys.Description(v.UUID), err)
	}
	b, err := unlockWithPassphrase(v, pass)
	if err != nil {
		if errors.Is(err, keyslot.ErrNoKeyslot) && o.pass.fromFile() && bytes.HasSuffix(pass, []byte("\n")) {
			err = fmt.Errorf("%w (the key file ends with a newline, which is part of the passphrase, as for cryptsetup --key-file: write it with printf '%%s' or echo -n)", err)
		}
		return nil, fmt.Errorf("loader: %s (LUKS %s): %w", v.Name, v.UUID, err)
	}
	say("key from the passphrase (keyslot KDF run here, checked against the header digest)")
	return &Key{Volume: v, Bytes: b, From: FromPassphrase, Source: "passphrase"}, nil
}

// KeyProbe is where a load would take a volume's key from now.
type KeyProbe struct {
	// From is the source; empty when only a passphrase would do.
	From KeySource
	// Source names it as load says it ("user key kdump-cryptsetup:vk-…").
	Source string
	// Notes say what each source tried gave, in order.
	Notes []string
	// Err is a source whose key the header refuses: a load fails on it.
	Err error
	// Unreadable is set when a user key is there but this process cannot
	// read it: it does not possess root's user keyring, which
	// ukdump.service does (KeyringMode=shared), or it lacks the
	// capabilities a sealed key needs.
	Unreadable bool
}

// ProbeKey says where a load would take v's key from now, without a
// passphrase: it tries the same sources with the same checks as load, and
// wipes what it read. Status uses it to tell whether the next load, at
// boot or by a hook, will find the key by itself.
func ProbeKey(v Volume, t config.Transport, o KeyOptions) KeyProbe {
	var p KeyProbe
	note := func(format string, args ...any) { p.Notes = append(p.Notes, fmt.Sprintf(format, args...)) }
	s := o.store()
	k, err := liveKey(v, t, s, note, false)
	if k != nil {
		p.From, p.Source = k.From, k.Source
		k.Wipe()
	}
	p.Err = err
	if k == nil && err == nil {
		// A user key that is there, sealed or not, gave no key: it
		// could not be read.
		_, ferr := s.Find("user", keys.Description(v.UUID))
		_, serr := s.FindSealed(keys.Description(v.UUID))
		p.Unreadable = ferr == nil || serr == nil
	}
	return p
}

// liveKey tries the sources that need nobody to type anything: the
// keyrings, then the live table. It returns no key and no error when none
// of them has the key. With seal, a user key it reads is sealed.
func liveKey(v Volume, t config.Transport, s KeyStore, say func(string, ...any), seal bool) (*Key, error) {
	k, err := keyringKey(v, t, s, say, seal)
	if k != nil || err != nil {
		return k, err
	}
	b, ref, err := s.TableKey(v.Name)
	switch {
	case err == nil:
		if err := v.Header.VerifyKey(b); err != nil {
			keys.Wipe(b)
			return nil, fmt.Errorf("loader: %s (LUKS %s): key in the live dm-crypt table: %w", v.Name, v.UUID, err)
		}
		say("key from the live dm-crypt table (checked against the header digest)")
		return &Key{Volume: v, Bytes: b, From: FromTable, Source: "dm-crypt table"}, nil
	case errors.Is(err, dm.ErrKeyInKeyring):
		say("the live mapping keeps its key in the keyring (%s), not in its table", ref)
	default:
		say("no key from the live mapping: %v", err)
	}
	return nil, nil
}

// keyringKey looks for the volume key in the keyrings: a logon key, which
// only the kernel transport can use since it never gives its bytes, then a
// user key, whose bytes serve either transport: one in a keyring the
// loader reaches (sealed once read, with seal), then one sealed by an
// earlier load.
func keyringKey(v Volume, t config.Transport, s KeyStore, say func(string, ...any), seal bool) (*Key, error) {
	logon := false
	for _, desc := range []string{keys.Description(v.UUID), keys.LegacyDescription(v.UUID)} {
		id, err := s.Find("logon", desc)
		if err != nil {
			continue
		}
		logon = true
		if t != config.Kernel {
			say("logon key %s found, but the initrd transport needs the key bytes, which a logon key never gives", desc)
			break
		}
		checked, err := verifyLogon(v, s, id)
		if err != nil {
			return nil, fmt.Errorf("loader: %s (LUKS %s): logon key %s: %w", v.Name, v.UUID, desc, err)
		}
		if checked {
			say("key from logon key %s (checked against the header digest)", desc)
		} else {
			say("key from logon key %s (not checked: this kernel cannot hash with a logon key; the crash kernel checks it)", desc)
		}
		return &Key{Volume: v, LogonDesc: desc, From: FromLogonKey, Source: "logon key " + desc}, nil
	}
	desc := keys.Description(v.UUID)
	if k, err := userKey(v, s, desc, say, seal); k != nil || err != nil {
		return k, err
	}
	id, err := s.FindSealed(desc)
	if err != nil {
		if logon {
			say("no user key %s", desc)
		} else {
			say("no logon or user key %s in the keyrings ukdump reaches", desc)
		}
		return nil, nil
	}
	b, err := s.ReadSealed(id)
	if err != nil {
		say("user key %s, sealed by an earlier load, not readable here: %v", desc, err)
		return nil, nil
	}
	if err := v.Header.VerifyKey(b); err != nil {
		keys.Wipe(b)
		return nil, fmt.Errorf("loader: %s (LUKS %s): sealed user key %s: %w", v.Name, v.UUID, desc, err)
	}
	say("key from user key %s, sealed by an earlier load (checked against the header digest)", desc)
	return &Key{Volume: v, Bytes: b, From: FromUserKey, Source: "user key " + desc + " (sealed)"}, nil
}

// userKey reads the user key desc from the keyrings the loader reaches
// and, with seal, seals it: from then on no process without CAP_SYS_ADMIN
// reads it (keys.Seal). It returns no key and no error when there is none
// it can read.
func userKey(v Volume, s KeyStore, desc string, say func(string, ...any), seal bool) (*Key, error) {
	id, err := s.Find("user", desc)
	if err != nil {
		return nil, nil
	}
	b, err := s.Read(id)
	if err != nil {
		say("user key %s found, but not readable here: %v", desc, err)
		return nil, nil
	}
	if err := v.Header.VerifyKey(b); err != nil {
		keys.Wipe(b)
		return nil, fmt.Errorf("loader: %s (LUKS %s): user key %s: %w", v.Name, v.UUID, desc, err)
	}
	k := &Key{Volume: v, Bytes: b, From: FromUserKey, Source: "user key " + desc}
	if !seal {
		say("key from user key %s (checked against the header digest; readable by root's processes until a load seals it)", desc)
		return k, nil
	}
	if err := s.Seal(id); err != nil {
		// The load goes on: the key stays where it was, as readable as
		// before ukdump read it.
		say("key from user key %s (checked against the header digest); WARNING: sealing it failed, so root's processes can still read it: %v", desc, err)
		return k, nil
	}
	say("key from user key %s (checked against the header digest; sealed: only a process with CAP_SYS_ADMIN reads it now)", desc)
	k.Source += " (sealed)"
	return k, nil
}

// verifyLogon checks a logon key against the digest with the kernel's
// keyed HMAC, since userspace cannot read a logon key. A kernel without it
// (before 6.2, or without AF_ALG hashes) cannot check here, which it
// reports as not checked: the crash kernel still checks before it maps
// anything.
func verifyLogon(v Volume, s KeyStore, id int) (checked bool, err error) {
	d := v.Header.Digest
	if d.Type != "pbkdf2" {
		return false, fmt.Errorf("digest type %q: %w", d.Type, luks.ErrUnsupported)
	}
	got, err := s.PBKDF2(id, d.Hash, d.Salt, d.Iterations, len(d.Value), luks.MaxVerifyTime)
	if errors.Is(err, keys.ErrNoKernelHMAC) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer keys.Wipe(got)
	if subtle.ConstantTimeCompare(got, d.Value) != 1 {
		return true, luks.ErrWrongKey
	}
	return true, nil
}

// unlockWithPassphrase runs the keyslot KDF here in the first kernel,
// which has the memory Argon2 needs, straight from the header and keyslot
// area: no device-mapper mapping is made, so no table carries the key and
// nothing is left behind if ukdump is interrupted.
func unlockWithPassphrase(v Volume, pass []byte) ([]byte, error) {
	f, err := os.Open(v.Backing)
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	defer f.Close()
	key, err := keyslot.Unlock(f, v.Header, pass)
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	return key, nil
}
