package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/crypttab"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// luksPlan is the plan of a fake machine whose target, ext4, is on the
// LUKS2 volume vda opened as root_crypt (dm-0, which holds /), with the
// key transport given, and a crypttab file holding tab (mode 0600).
func luksPlan(t *testing.T, transport, tab string) (*loader.Plan, string, string) {
	t.Helper()
	s := loadertest.New(t, "ext4 UUID="+loadertest.UUID+"\nkey_transport "+transport+"\n")
	_, h := s.LUKS(t, "root_crypt", lukstest.Options{})
	loadertest.Write(t, filepath.Join(s.ProcDir, "self", "mountinfo"), "1 0 "+loadertest.MappedNumber+" / / rw - ext4 /dev/mapper/root_crypt rw\n")
	crashDM := filepath.Join(s.Root, "crash_dm_crypt_keys")
	if transport == "kernel" {
		if err := os.Mkdir(crashDM, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p, err := loader.Prepare(loader.Options{ConfigFile: s.ConfigFile, Kernel: s.Kernel, ModuleDir: s.ModuleDir, Init: s.Init,
		Sys: s.Sys, ProcDir: s.ProcDir, StateFile: s.StateFile, CrashDM: keys.CrashDM{Dir: crashDM}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(s.Root, "crypttab")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(tab, "$UUID", h.UUID)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, file, h.UUID
}

var (
	debian13 = crypttab.Openers{Systemd: crypttab.Version{Major: 257}, Cryptsetup: crypttab.Version{Major: 2, Minor: 7, Patch: 5}}
	debian12 = crypttab.Openers{Systemd: crypttab.Version{Major: 252}, Cryptsetup: crypttab.Version{Major: 2, Minor: 6, Patch: 1}, Cryptroot: true}
)

const tab = "# <target name> <source device> <key file> <options>\nswap_crypt /dev/vdb none swap\nroot_crypt UUID=$UUID none luks,discard\n\n"

// TestSetupCrypttab: the diff, the question, the file written with a
// backup and its mode, and nothing to change the second time.
func TestSetupCrypttab(t *testing.T) {
	p, file, uuid := luksPlan(t, "initrd", tab)
	var out bytes.Buffer
	env := crypttabEnv{File: file, Openers: debian13, In: strings.NewReader("y\n"), Terminal: true, Out: &out}
	if err := editCrypttab(p, env, false); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	opt := "link-volume-key=@u::%user:kdump-cryptsetup:vk-" + uuid
	want := "LUKS volumes under the dump target (key transport initrd, so user keys):\n" +
		"  root_crypt (LUKS " + uuid + "): line 3 (root_crypt): " + opt + "\n\n" +
		"--- " + file + "\n+++ " + file + " (new)\n@@ -1,4 +1,4 @@\n" +
		" # <target name> <source device> <key file> <options>\n swap_crypt /dev/vdb none swap\n" +
		"-root_crypt UUID=" + uuid + " none luks,discard\n" +
		"+root_crypt UUID=" + uuid + " none luks,discard," + opt + "\n \n\n" +
		"Apply? [y/N] wrote " + file + " (as it was before: " + file + ".ukdump-bak)\n" +
		"The option takes effect when systemd-cryptsetup next opens the volumes: at the next boot (or after closing and opening them); the load at boot then finds the keys.\n" +
		"A user key in root's user keyring can be read by root's processes, as the key in a live dm-crypt table can; it lives in RAM only.\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	got, _ := os.ReadFile(file)
	if !strings.Contains(string(got), "root_crypt UUID="+uuid+" none luks,discard,"+opt+"\n") {
		t.Errorf("crypttab now:\n%s", got)
	}
	if b, _ := os.ReadFile(file + ".ukdump-bak"); string(b) != strings.ReplaceAll(tab, "$UUID", uuid) {
		t.Errorf("backup:\n%s", b)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 as before", st.Mode())
	}

	out.Reset()
	if err := editCrypttab(p, env, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "line 3 (root_crypt) already has "+opt) || !strings.Contains(out.String(), file+" needs no change\n") {
		t.Errorf("second run:\n%s", out.String())
	}
}

// TestSetupCrypttabRefused: without a terminal only --yes applies; "n"
// or nothing on a terminal applies nothing.
func TestSetupCrypttabRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		terminal bool
		answer   string
		want     string
	}{
		{"no terminal", false, "y\n", "run ukdump setup-crypttab --yes to apply it"},
		{"no", true, "n\n", "not applied: nothing changed"},
		{"end of input", true, "", "not applied: nothing changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, file, _ := luksPlan(t, "initrd", tab)
			before, _ := os.ReadFile(file)
			var out bytes.Buffer
			err := editCrypttab(p, crypttabEnv{File: file, Openers: debian13, In: strings.NewReader(tc.answer), Terminal: tc.terminal, Out: &out}, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("editCrypttab = %v, want %q", err, tc.want)
			}
			if !strings.Contains(out.String(), "\n+root_crypt ") {
				t.Errorf("no diff shown:\n%s", out.String())
			}
			if after, _ := os.ReadFile(file); !bytes.Equal(after, before) {
				t.Errorf("crypttab changed:\n%s", after)
			}
			if _, err := os.Stat(file + ".ukdump-bak"); err == nil {
				t.Error("a backup without a change")
			}
		})
	}
}

// TestSetupCrypttabKernel: the kernel transport wants logon keys, and a
// user key option is replaced; --yes applies without a terminal.
func TestSetupCrypttabKernel(t *testing.T) {
	p, file, uuid := luksPlan(t, "kernel", "root_crypt\tUUID=$UUID\tnone\tluks,link-volume-key=@u::%user:kdump-cryptsetup:vk-$UUID\n")
	var out bytes.Buffer
	if err := editCrypttab(p, crypttabEnv{File: file, Openers: crypttab.Openers{}, Out: &out}, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got, _ := os.ReadFile(file)
	if want := "root_crypt\tUUID=" + uuid + "\tnone\tluks,link-volume-key=@u::%logon:kdump-cryptsetup:vk-" + uuid + "\n"; string(got) != want {
		t.Errorf("crypttab now %q, want %q", got, want)
	}
	for _, w := range []string{"key transport kernel, so logon keys", "warning: cannot tell whether systemd-cryptsetup here honours it",
		"run ukdump setup-crypttab again: the initrd transport needs user keys"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// TestSetupCrypttabNoCryptsetupProgram: systemd 257 without the cryptsetup
// program (Debian 13's systemd-cryptsetup) gets a note, not a warning.
func TestSetupCrypttabNoCryptsetupProgram(t *testing.T) {
	p, file, _ := luksPlan(t, "initrd", "root_crypt\tUUID=$UUID\tnone\tluks\n")
	var out bytes.Buffer
	o := crypttab.Openers{Systemd: crypttab.Version{Major: 257}}
	if err := editCrypttab(p, crypttabEnv{File: file, Openers: o, Out: &out}, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "warning:") || !strings.Contains(out.String(), "note: no cryptsetup program here tells libcryptsetup's version; systemd 257") {
		t.Errorf("want the note and no warning:\n%s", out.String())
	}
}

// TestSetupCrypttabDebian12: a volume without a line is said so; one that
// cryptroot opens in the initramfs is pointed at the hook; systemd 252 is
// too old for the option.
func TestSetupCrypttabDebian12(t *testing.T) {
	p, file, _ := luksPlan(t, "initrd", "other UUID=x none luks\n")
	var out bytes.Buffer
	if err := editCrypttab(p, crypttabEnv{File: file, Openers: debian12, Out: &out}, true); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"no line in " + file + ": it is opened some other way", file + " needs no change",
		"warning: systemd-cryptsetup here ignores it (link-volume-key= needs systemd 256 or later with cryptsetup 2.7 or later; this system has systemd 252, cryptsetup 2.6.1)"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	p, file, _ = luksPlan(t, "initrd", tab)
	out.Reset()
	if err := editCrypttab(p, crypttabEnv{File: file, Openers: debian12, Out: &out}, true); err != nil {
		t.Fatal(err)
	}
	if w := "Debian's cryptroot opens it in the initramfs and ignores this option"; !strings.Contains(out.String(), w) {
		t.Errorf("output lacks %q:\n%s", w, out.String())
	}
}

// TestRemoveCrypttab: the package's removal takes ukdump's
// link-volume-key= off every line, of either key type, keeps the
// administrator's own options and values, and keeps a backup.
func TestRemoveCrypttab(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "crypttab")
	in := "# kept\nroot_crypt UUID=a none luks,link-volume-key=@u::%user:kdump-cryptsetup:vk-a,discard\n" +
		"data UUID=b /key luks,link-volume-key=@u::%logon:kdump-cryptsetup:vk-b\n" +
		"mine UUID=c none luks,link-volume-key=@s::%user:my-own-key\n"
	if err := os.WriteFile(file, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := removeCrypttab(file, true, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := "# kept\nroot_crypt UUID=a none luks,discard\ndata UUID=b /key luks\nmine UUID=c none luks,link-volume-key=@s::%user:my-own-key\n"
	if b, _ := os.ReadFile(file); string(b) != want {
		t.Errorf("after removal:\n%s\nwant\n%s", b, want)
	}
	if b, _ := os.ReadFile(file + backupSuffix); string(b) != in {
		t.Errorf("backup:\n%s", b)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	out.Reset()
	if err := removeCrypttab(file, true, &out); err != nil || !strings.Contains(out.String(), "nothing to do") {
		t.Errorf("second removal: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := removeCrypttab(filepath.Join(dir, "none"), true, &out); err != nil || !strings.Contains(out.String(), "does not exist") {
		t.Errorf("no crypttab: %v\n%s", err, out.String())
	}
}
