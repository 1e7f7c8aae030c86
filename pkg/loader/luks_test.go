package loader

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/luks"
)

// fakeKeys is a KeyStore: keyring keys by type and description, live
// tables by mapping name. It keeps every buffer it hands out, so a test
// can check that the loader wiped them.
type fakeKeys struct {
	ring   []fakeKey
	tables map[string][]byte
	// refs are the mappings whose table names a keyring key.
	refs map[string]string
	// noHMAC is a kernel that cannot hash with a keyring key.
	noHMAC bool
	handed [][]byte
}

type fakeKey struct {
	typ, desc string
	payload   []byte
}

func (f *fakeKeys) add(typ, desc string, payload []byte) {
	f.ring = append(f.ring, fakeKey{typ, desc, bytes.Clone(payload)})
}

func (f *fakeKeys) Find(typ, desc string) (int, error) {
	for i, k := range f.ring {
		if k.typ == typ && k.desc == desc {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("keys: %s key %q: %w", typ, desc, keys.ErrNoKey)
}

func (f *fakeKeys) Read(id int) ([]byte, error) {
	k := f.ring[id-1]
	if k.typ != "user" {
		return nil, fmt.Errorf("keys: read key %d: operation not supported", id)
	}
	return f.hand(k.payload), nil
}

func (f *fakeKeys) PBKDF2(id int, hash string, salt []byte, iter, keyLen int, limit time.Duration) ([]byte, error) {
	if f.noHMAC {
		return nil, keys.ErrNoKernelHMAC
	}
	h, err := luks.Hash(hash)
	if err != nil {
		return nil, err
	}
	return luks.PBKDF2(h, f.ring[id-1].payload, salt, iter, keyLen, limit)
}

func (f *fakeKeys) TableKey(name string) ([]byte, string, error) {
	if ref, ok := f.refs[name]; ok {
		return nil, ref, fmt.Errorf("dm: %s: %w", name, dm.ErrKeyInKeyring)
	}
	if k, ok := f.tables[name]; ok {
		return f.hand(k), "", nil
	}
	return nil, "", errors.New("dm: open /dev/mapper/control: no such file or directory")
}

func (f *fakeKeys) hand(b []byte) []byte {
	c := bytes.Clone(b)
	f.handed = append(f.handed, c)
	return c
}

// allWiped fails the test when a buffer handed out still holds a byte.
func (f *fakeKeys) allWiped(t *testing.T) {
	t.Helper()
	for i, b := range f.handed {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("key buffer %d handed to the loader was not wiped", i)
		}
	}
}

// testVolume is a LUKS2 volume whose header digest matches key, the
// header built here so that no image or cryptsetup is needed.
func testVolume(t *testing.T, name string) (Volume, []byte) {
	t.Helper()
	key, salt, id := make([]byte, 32), make([]byte, 32), make([]byte, 16)
	rand.Read(key)
	rand.Read(salt)
	rand.Read(id)
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16])
	digest, err := luks.PBKDF2(sha256.New, key, salt, 1000, 32, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := &luks.Header{Version: 2, UUID: uuid, KeySize: 32, Cipher: "aes-xts-plain64",
		Digest: luks.Digest{Type: "pbkdf2", Hash: "sha256", Iterations: 1000, Salt: salt, Value: digest}}
	return Volume{UUID: uuid, Name: name, Mapped: "dm-0", Backing: "/nonexistent/vda", Header: h}, key
}

// TestFindKeySources: the sources in order (a logon key for the kernel
// transport, a user key, the live table, a passphrase), each checked
// against the header, and the load output naming the one used.
func TestFindKeySources(t *testing.T) {
	wrong := bytes.Repeat([]byte{7}, 32)
	type have struct{ logon, legacy, user, table, unreadable, ref bool }
	for _, tc := range []struct {
		name      string
		transport config.Transport
		have      have
		wrongUser bool
		noHMAC    bool
		from      KeySource
		want      []string // in the log, or in the error
		err       string
	}{
		{"kernel: logon first", config.Kernel, have{logon: true, user: true, table: true}, false, false, FromLogonKey,
			[]string{"key from logon key kdump-cryptsetup:vk-", "(checked against the header digest)"}, ""},
		{"kernel: legacy logon", config.Kernel, have{legacy: true}, false, false, FromLogonKey,
			[]string{"key from logon key cryptsetup:"}, ""},
		{"kernel: logon unchecked", config.Kernel, have{logon: true}, false, true, FromLogonKey,
			[]string{"(not checked: this kernel cannot hash with a logon key; the crash kernel checks it)"}, ""},
		{"kernel: user key", config.Kernel, have{user: true, table: true}, false, false, FromUserKey,
			[]string{"key from user key kdump-cryptsetup:vk-"}, ""},
		{"initrd: logon passed over for user", config.Initrd, have{logon: true, user: true, table: true}, false, false, FromUserKey,
			[]string{"logon key kdump-cryptsetup:vk-", "found, but the initrd transport needs the key bytes", "key from user key kdump-cryptsetup:vk-"}, ""},
		{"initrd: logon, then table", config.Initrd, have{logon: true, table: true}, false, false, FromTable,
			[]string{"found, but the initrd transport needs", "no user key kdump-cryptsetup:vk-", "key from the live dm-crypt table"}, ""},
		{"initrd: user key", config.Initrd, have{user: true, table: true}, false, false, FromUserKey,
			[]string{"key from user key kdump-cryptsetup:vk-"}, ""},
		{"unreadable user key, then table", config.Initrd, have{user: true, unreadable: true, table: true}, false, false, FromTable,
			[]string{"found, but not readable here", "key from the live dm-crypt table"}, ""},
		{"table", config.Initrd, have{table: true}, false, false, FromTable,
			[]string{"no logon or user key kdump-cryptsetup:vk-", "key from the live dm-crypt table"}, ""},
		{"wrong user key", config.Initrd, have{user: true, table: true}, true, false, "", nil,
			"user key kdump-cryptsetup:vk-"},
		{"nothing", config.Kernel, have{ref: true}, false, false, "",
			[]string{"the live mapping keeps its key in the keyring (:64:logon:cryptsetup:x-d0), not in its table"},
			"no key: no logon or user key kdump-cryptsetup:vk-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, key := testVolume(t, "crypt")
			f := &fakeKeys{tables: map[string][]byte{}, refs: map[string]string{}, noHMAC: tc.noHMAC}
			if tc.have.logon {
				f.add("logon", keys.Description(v.UUID), key)
			}
			if tc.have.legacy {
				f.add("logon", keys.LegacyDescription(v.UUID), key)
			}
			switch {
			case tc.have.user && tc.wrongUser:
				f.add("user", keys.Description(v.UUID), wrong)
			case tc.have.user:
				f.add("user", keys.Description(v.UUID), key)
			}
			if tc.have.table {
				f.tables[v.Name] = key
			}
			if tc.have.ref {
				f.refs[v.Name] = ":64:logon:cryptsetup:x-d0"
			}
			var log bytes.Buffer
			o := KeyOptions{Log: &log, Store: unreadable(f, tc.have.unreadable)}
			o.pass = &passphrases{o: o}
			k, err := findKey(v, tc.transport, o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "crypt (LUKS "+v.UUID+")") {
					t.Fatalf("findKey = %+v, %v; want an error naming the volume and %q", k, err, tc.err)
				}
				if tc.wrongUser && !errors.Is(err, luks.ErrWrongKey) {
					t.Errorf("wrong user key: %v, want ErrWrongKey", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(log.String()+fmt.Sprint(err), w) {
					t.Errorf("log lacks %q:\n%s", w, log.String())
				}
			}
			if k == nil {
				f.allWiped(t)
				return
			}
			if k.From != tc.from || !strings.HasPrefix(k.Source, string(tc.from)) {
				t.Errorf("key from %q (%q), want %q", k.From, k.Source, tc.from)
			}
			switch k.From {
			case FromLogonKey:
				if k.Bytes != nil || k.LogonDesc == "" {
					t.Errorf("logon key with bytes %d or without a description", len(k.Bytes))
				}
			default:
				if !bytes.Equal(k.Bytes, key) {
					t.Errorf("key bytes differ from the volume key")
				}
			}
			k.Wipe()
			f.allWiped(t)
		})
	}
}

// unreadableKeys is a keyring whose user keys cannot be read, as when the
// loader does not possess them.
type unreadableKeys struct{ *fakeKeys }

func (unreadableKeys) Read(id int) ([]byte, error) {
	return nil, fmt.Errorf("keys: read key %d: permission denied", id)
}

func unreadable(f *fakeKeys, yes bool) KeyStore {
	if yes {
		return unreadableKeys{f}
	}
	return f
}

// TestProbeKey: status's look at the sources says which one a load would
// use, or why none, and wipes every byte it read.
func TestProbeKey(t *testing.T) {
	v, key := testVolume(t, "crypt")
	f := &fakeKeys{tables: map[string][]byte{v.Name: key}}
	f.add("user", keys.Description(v.UUID), key)
	p := ProbeKey(v, config.Initrd, KeyOptions{Store: f})
	if p.From != FromUserKey || p.Source != "user key "+keys.Description(v.UUID) || p.Err != nil {
		t.Errorf("ProbeKey = %+v", p)
	}
	f.allWiped(t)

	f = &fakeKeys{refs: map[string]string{v.Name: ":64:logon:cryptsetup:x"}}
	f.add("logon", keys.Description(v.UUID), key)
	p = ProbeKey(v, config.Initrd, KeyOptions{Store: f})
	if p.From != "" || p.Err != nil || len(p.Notes) != 3 || !strings.Contains(p.Notes[0], "initrd transport needs the key bytes") {
		t.Errorf("ProbeKey with only a logon key, initrd transport = %+v", p)
	}

	f = &fakeKeys{tables: map[string][]byte{v.Name: bytes.Repeat([]byte{1}, 32)}}
	p = ProbeKey(v, config.Initrd, KeyOptions{Store: f})
	if p.From != "" || !errors.Is(p.Err, luks.ErrWrongKey) {
		t.Errorf("ProbeKey with a wrong table key = %+v", p)
	}
	f.allWiped(t)
}

// TestPrepareKeysUserKey: a user key goes into the initramfs secrets for
// the initrd transport, and every copy is wiped by cleanup.
func TestPrepareKeysUserKey(t *testing.T) {
	v, key := testVolume(t, "crypt")
	f := &fakeKeys{}
	f.add("user", keys.Description(v.UUID), key)
	p := &Plan{Volumes: []Volume{v}, Transport: config.Initrd,
		Options: Options{Keys: KeyOptions{Store: f}, CrashDM: keys.CrashDM{Dir: filepath.Join(t.TempDir(), "none")}}}
	var out bytes.Buffer
	h, err := prepareKeys(p, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.secrets) != 1 || !bytes.Equal(h.secrets[0].Data, key) || h.sources[0].Source != "user key "+keys.Description(v.UUID) {
		t.Fatalf("handover: %d secrets, sources %+v", len(h.secrets), h.sources)
	}
	if !strings.Contains(out.String(), "crypt: key from user key "+keys.Description(v.UUID)) {
		t.Errorf("load output does not say the source:\n%s", out.String())
	}
	if bytes.Contains(out.Bytes(), key) || strings.Contains(out.String(), fmt.Sprintf("%x", key)) {
		t.Error("load output holds the key")
	}
	if err := h.cleanup(); err != nil {
		t.Fatal(err)
	}
	f.allWiped(t)
}

// TestPrepareKeysUserKeyKernel: with the kernel transport, a user key's
// bytes become a logon key of the loader's process keyring for the load
// only: named in crash_dm_crypt_keys, invalidated by cleanup, the bytes
// wiped at once. It needs the host's keyring.
func TestPrepareKeysUserKeyKernel(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v, key := testVolume(t, "crypt")
	desc := keys.Description(v.UUID)
	f := &fakeKeys{}
	f.add("user", desc, key)
	dir := filepath.Join(t.TempDir(), "crash_dm_crypt_keys")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Plan{Volumes: []Volume{v}, Transport: config.Kernel,
		Options: Options{Keys: KeyOptions{Store: f}, CrashDM: keys.CrashDM{Dir: dir}}}
	var out bytes.Buffer
	h, err := prepareKeys(p, &out)
	if err != nil && strings.Contains(err.Error(), "add logon key") {
		t.Skipf("no kernel keyring here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.allWiped(t) // the kernel has its copy
	if _, err := keys.Find("logon", desc); err != nil {
		t.Errorf("no temporary logon key during the load: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, v.UUID, "description")); err != nil || string(b) != desc {
		t.Errorf("crash_dm_crypt_keys item = %q, %v", b, err)
	}
	if err := h.cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Find("logon", desc); err == nil {
		t.Error("the temporary logon key outlived the load")
	}
}
