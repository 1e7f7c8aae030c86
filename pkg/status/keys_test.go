package status

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/crypttab"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// TestKeys: for the LUKS volume under the target, status says where a new
// load would take its key from, never the key, and when from nowhere,
// what to do on this system.
func TestKeys(t *testing.T) {
	s := loadertest.New(t, "")
	s.Kexec(t, true, 128<<20)
	key, h := s.LUKS(t, "root_crypt", lukstest.Options{})
	// The target's filesystem is /, so Debian's cryptroot would open it.
	loadertest.Write(t, filepath.Join(s.ProcDir, "self", "mountinfo"), "1 0 "+loadertest.MappedNumber+" / / rw - ext4 /dev/mapper/root_crypt rw\n")
	crashDM := filepath.Join(s.Root, "crash_dm_crypt_keys")
	if err := os.Mkdir(crashDM, 0o755); err != nil {
		t.Fatal(err)
	}
	tabFile := filepath.Join(s.Root, "crypttab")
	desc := keys.Description(h.UUID)
	line := "root_crypt UUID=" + h.UUID + " none luks"
	debian13 := crypttab.Openers{Systemd: crypttab.Version{Major: 257}, Cryptsetup: crypttab.Version{Major: 2, Minor: 7}}
	debian12 := crypttab.Openers{Systemd: crypttab.Version{Major: 252}, Cryptsetup: crypttab.Version{Major: 2, Minor: 6}}
	withCryptroot := debian12
	withCryptroot.Cryptroot = true
	kernelState := &loader.State{Kernel: "k", TargetUUID: loadertest.UUID, Path: "/crash",
		Volumes: []loader.VolumeState{{UUID: h.UUID, Name: "root_crypt", Transport: config.Kernel, Source: "logon key " + desc}}}
	type source struct{ logon, user, table, wrong, unreadable bool }
	for _, tc := range []struct {
		name      string
		transport string
		have      source
		tab       string
		openers   crypttab.Openers
		state     *loader.State
		want      []string
	}{
		{"user key", "initrd", source{user: true, table: true}, "", debian13, nil,
			[]string{"LUKS keys:    where a new load (reload, boot) takes them from, initrd transport:\n",
				"  root_crypt (UUID " + h.UUID + "): user key " + desc + " (checked against the LUKS header)\n"}},
		{"logon key, kernel transport", "kernel", source{logon: true, user: true}, "", debian13, nil,
			[]string{"kernel transport:\n", "): logon key " + desc + " (checked against the LUKS header)\n"}},
		{"live table", "initrd", source{table: true}, "", debian13, nil,
			[]string{"): dm-crypt table (checked against the LUKS header)\n"}},
		{"wrong user key", "initrd", source{user: true, wrong: true}, "", debian13, nil,
			[]string{"): a load FAILS: loader: root_crypt (LUKS " + h.UUID + "): user key " + desc + ": luks: " + h.UUID + ": volume key does not match the header digest\n"}},
		{"unreadable user key", "initrd", source{user: true, unreadable: true}, "", debian13, nil,
			[]string{"): user key " + desc + ", which this process cannot read; ukdump.service can"}},
		{"none, systemd 257", "initrd", source{}, line + "\n", debian13, nil,
			[]string{"): none without a passphrase: no logon or user key " + desc + " in the keyrings ukdump reaches; no key from the live mapping: dm: open /dev/mapper/control: no such file or directory\n",
				"    to fix: run ukdump setup-crypttab, then reboot\n"}},
		{"none, logon key for initrd", "initrd", source{logon: true}, line + ",link-volume-key=@u::%logon:" + desc + "\n", debian13, nil,
			[]string{"found, but the initrd transport needs the key bytes, which a logon key never gives; no user key " + desc,
				"    to fix: run ukdump setup-crypttab, then reboot\n"}},
		{"none, line already set", "initrd", source{}, line + ",link-volume-key=@u::%user:" + desc + "\n", debian13, nil,
			[]string{"    to fix: its crypttab line has link-volume-key=@u::%user:" + desc + ": the key is there once systemd-cryptsetup opens the volume again (reboot)\n"}},
		{"none, user key line, kernel transport", "kernel", source{}, line + ",link-volume-key=@u::%user:" + desc + "\n", debian13, nil,
			[]string{"    to fix: its crypttab line has link-volume-key=@u::%user:" + desc + ": the key is there once"}},
		{"none, cryptroot", "initrd", source{}, line + "\n", withCryptroot, nil,
			[]string{"    to fix: reboot: from the next boot on, the ukdump initramfs hook has cryptroot keep the key in the dm-crypt table (it is installed with the package; run update-initramfs -u if you installed by hand)\n"}},
		{"none, systemd 252", "initrd", source{}, line + "\n", debian12, nil,
			[]string{"    to fix: ukdump load --key-file FILE (a passphrase of the volume; or run ukdump load on a terminal)\n"}},
		{"none, no crypttab line", "initrd", source{}, "", debian13, nil,
			[]string{"    to fix: ukdump load --key-file FILE"}},
		{"none, kernel keys reusable", "kernel", source{}, line + "\n", debian13, kernelState,
			[]string{"    ukdump reload reuses the key the loaded crash kernel holds\n", "    to fix: run ukdump setup-crypttab, then reboot\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loadertest.Write(t, s.ConfigFile, "ext4 UUID="+loadertest.UUID+"\npath /crash\nkey_transport "+tc.transport+"\n")
			loadertest.Write(t, tabFile, tc.tab)
			os.Remove(s.StateFile)
			if tc.state != nil {
				b, err := json.Marshal(tc.state)
				if err != nil {
					t.Fatal(err)
				}
				loadertest.Write(t, s.StateFile, string(b))
			}
			f := &loadertest.Keys{Tables: map[string][]byte{}, Unreadable: tc.have.unreadable}
			k := key
			if tc.have.wrong {
				k = bytes.Repeat([]byte{7}, len(key))
			}
			if tc.have.logon {
				f.Add("logon", desc, k)
			}
			if tc.have.user {
				f.Add("user", desc, k)
			}
			if tc.have.table {
				f.Tables["root_crypt"] = k
			}
			o := loader.Options{ConfigFile: s.ConfigFile, Sys: s.Sys, ProcDir: s.ProcDir, StateFile: s.StateFile,
				CrashDM: keys.CrashDM{Dir: crashDM}, Keys: loader.KeyOptions{Store: f}}
			r := Gather(o, Env{Crypttab: tabFile, Openers: tc.openers})
			out := text(r)
			wantLines(t, out, tc.want...)
			if strings.Contains(out, hex.EncodeToString(key)) || bytes.Contains([]byte(out), key) {
				t.Errorf("status shows the key:\n%s", out)
			}
			f.AllWiped(t)
			if len(r.Errs) != 0 {
				t.Errorf("errors: %v", r.Errs)
			}
		})
	}
}

// TestKeysError: a transport the kernel lacks is said in the keys line.
func TestKeysError(t *testing.T) {
	s := loadertest.New(t, "ext4 UUID="+loadertest.UUID+"\nkey_transport kernel\n")
	s.Kexec(t, false, 128<<20)
	s.LUKS(t, "root_crypt", lukstest.Options{})
	s.Mounts(t)
	o := loader.Options{ConfigFile: s.ConfigFile, Sys: s.Sys, ProcDir: s.ProcDir, StateFile: s.StateFile,
		CrashDM: keys.CrashDM{Dir: filepath.Join(s.Root, "none")}, Keys: loader.KeyOptions{Store: &loadertest.Keys{}}}
	wantLines(t, text(Gather(o, Env{})), "LUKS keys:    loader: key_transport kernel: this kernel has no "+filepath.Join(s.Root, "none"))
}
