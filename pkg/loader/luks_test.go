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

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
	"github.com/ukdump/ukdump/pkg/luks"
)

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
			f := &loadertest.Keys{Tables: map[string][]byte{}, Refs: map[string]string{}, NoHMAC: tc.noHMAC, Unreadable: tc.have.unreadable}
			if tc.have.logon {
				f.Add("logon", keys.Description(v.UUID), key)
			}
			if tc.have.legacy {
				f.Add("logon", keys.LegacyDescription(v.UUID), key)
			}
			switch {
			case tc.have.user && tc.wrongUser:
				f.Add("user", keys.Description(v.UUID), wrong)
			case tc.have.user:
				f.Add("user", keys.Description(v.UUID), key)
			}
			if tc.have.table {
				f.Tables[v.Name] = key
			}
			if tc.have.ref {
				f.Refs[v.Name] = ":64:logon:cryptsetup:x-d0"
			}
			var log bytes.Buffer
			o := KeyOptions{Log: &log, Store: f}
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
				f.AllWiped(t)
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
			f.AllWiped(t)
		})
	}
}

// TestProbeKey: status's look at the sources says which one a load would
// use, or why none, and wipes every byte it read.
func TestProbeKey(t *testing.T) {
	v, key := testVolume(t, "crypt")
	f := &loadertest.Keys{Tables: map[string][]byte{v.Name: key}}
	f.Add("user", keys.Description(v.UUID), key)
	p := ProbeKey(v, config.Initrd, KeyOptions{Store: f})
	if p.From != FromUserKey || p.Source != "user key "+keys.Description(v.UUID) || p.Err != nil {
		t.Errorf("ProbeKey = %+v", p)
	}
	f.AllWiped(t)

	f = &loadertest.Keys{Refs: map[string]string{v.Name: ":64:logon:cryptsetup:x"}}
	f.Add("logon", keys.Description(v.UUID), key)
	p = ProbeKey(v, config.Initrd, KeyOptions{Store: f})
	if p.From != "" || p.Err != nil || len(p.Notes) != 3 || !strings.Contains(p.Notes[0], "initrd transport needs the key bytes") {
		t.Errorf("ProbeKey with only a logon key, initrd transport = %+v", p)
	}

	f = &loadertest.Keys{Unreadable: true}
	f.Add("user", keys.Description(v.UUID), key)
	if p = ProbeKey(v, config.Initrd, KeyOptions{Store: f}); p.From != "" || !p.Unreadable {
		t.Errorf("ProbeKey with an unreadable user key = %+v", p)
	}

	f = &loadertest.Keys{Tables: map[string][]byte{v.Name: bytes.Repeat([]byte{1}, 32)}}
	p = ProbeKey(v, config.Initrd, KeyOptions{Store: f})
	if p.From != "" || !errors.Is(p.Err, luks.ErrWrongKey) {
		t.Errorf("ProbeKey with a wrong table key = %+v", p)
	}
	f.AllWiped(t)
}

// TestPrepareKeysUserKey: a user key goes into the initramfs secrets for
// the initrd transport, and every copy is wiped by cleanup. The load seals
// the key; the next load reads the sealed key. A seal that fails leaves
// the load going, with a warning.
func TestPrepareKeysUserKey(t *testing.T) {
	v, key := testVolume(t, "crypt")
	desc := keys.Description(v.UUID)
	f := &loadertest.Keys{}
	f.Add("user", desc, key)
	p := &Plan{Volumes: []Volume{v}, Transport: config.Initrd,
		Options: Options{Keys: KeyOptions{Store: f}, CrashDM: keys.CrashDM{Dir: filepath.Join(t.TempDir(), "none")}}}
	for i, want := range []string{
		"crypt: key from user key " + desc + " (checked against the header digest; sealed: only a process with CAP_SYS_ADMIN reads it now)",
		"crypt: key from user key " + desc + ", sealed by an earlier load (checked against the header digest)",
	} {
		var out bytes.Buffer
		h, err := prepareKeys(p, &out)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.secrets) != 1 || !bytes.Equal(h.secrets[0].Data, key) || h.sources[0].Source != "user key "+desc+" (sealed)" {
			t.Fatalf("load %d: handover: %d secrets, sources %+v", i, len(h.secrets), h.sources)
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("load %d: output lacks %q:\n%s", i, want, out.String())
		}
		if !f.Sealed(desc) {
			t.Errorf("load %d: the user key is not sealed", i)
		}
		if bytes.Contains(out.Bytes(), key) || strings.Contains(out.String(), fmt.Sprintf("%x", key)) {
			t.Error("load output holds the key")
		}
		if err := h.cleanup(); err != nil {
			t.Fatal(err)
		}
		f.AllWiped(t)
	}

	f = &loadertest.Keys{SealErr: errors.New("keys: sealing key 1: chown: operation not permitted")}
	f.Add("user", desc, key)
	p.Options.Keys.Store = f
	var out bytes.Buffer
	h, err := prepareKeys(p, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "WARNING: sealing it failed, so root's processes can still read it: keys: sealing key 1: chown: operation not permitted") ||
		h.sources[0].Source != "user key "+desc {
		t.Errorf("a failed seal: source %q, output:\n%s", h.sources[0].Source, out.String())
	}
	if err := h.cleanup(); err != nil {
		t.Fatal(err)
	}
	f.AllWiped(t)
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
	f := &loadertest.Keys{}
	f.Add("user", desc, key)
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
	f.AllWiped(t) // the kernel has its copy
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
