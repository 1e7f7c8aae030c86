package crypttab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/loader/loadertest"
)

// runner answers "systemctl --version" and "cryptsetup --version" as the
// given outputs; an empty one is a missing program.
func runner(systemctl, cryptsetup string) Runner {
	return func(name string, args ...string) ([]byte, error) {
		out := map[string]string{"systemctl": systemctl, "cryptsetup": cryptsetup}[name]
		if out == "" || len(args) != 1 || args[0] != "--version" {
			return nil, errors.New("exec: " + name + ": executable file not found in $PATH")
		}
		return []byte(out), nil
	}
}

func TestDetect(t *testing.T) {
	root := t.TempDir()
	const (
		sd257 = "systemd 257 (257.9-1~deb13u1)\n+PAM +AUDIT +SELINUX\n"
		sd252 = "systemd 252 (252.38-1~deb12u1)\n+PAM\n"
		cs275 = "cryptsetup 2.7.5 flags: UDEV BLKID KEYRING FIPS KERNEL_CAPI PWQUALITY HW_OPAL\n"
		cs261 = "cryptsetup 2.6.1 flags: UDEV BLKID KEYRING KERNEL_CAPI\n"
	)
	for _, tc := range []struct {
		name                  string
		systemctl, cryptsetup string
		systemd, cs           string
		ok, known             bool
	}{
		{"Debian 13", sd257, cs275, "257", "2.7.5", true, true},
		{"Debian 12", sd252, cs261, "252", "2.6.1", false, true},
		{"new systemd, old cryptsetup", sd257, cs261, "257", "2.6.1", false, true},
		{"no systemd", "", cs275, "unknown", "2.7.5", false, false},
		{"old systemd, no cryptsetup", sd252, "", "252", "unknown", false, true},
		{"new systemd, no cryptsetup", sd257, "", "257", "unknown", true, false},
		{"nothing", "", "", "unknown", "unknown", false, false},
		{"garbage", "hello\n", "cryptsetup x.y\n", "unknown", "unknown", false, false},
		{"release candidate", "systemd 258~rc2 (258~rc2-1)\n", "cryptsetup 2.8.0-rc1 flags:\n", "258", "2.8.0", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Detect(root, runner(tc.systemctl, tc.cryptsetup))
			ok, known := o.LinkVolumeKey()
			if o.systemd() != tc.systemd || o.Cryptsetup.String() != tc.cs || ok != tc.ok || known != tc.known || o.Cryptroot {
				t.Errorf("Detect = %+v (systemd %s), LinkVolumeKey %v %v", o, o.systemd(), ok, known)
			}
			if r := o.Requirement(); !strings.Contains(r, "systemd 256 or later with cryptsetup 2.7 or later; this system has systemd "+tc.systemd+", cryptsetup "+tc.cs) {
				t.Errorf("Requirement = %q", r)
			}
		})
	}
	loadertest.Write(t, filepath.Join(root, CryptrootScript), "#!/bin/sh\n")
	if !Detect(root, runner("", "")).Cryptroot {
		t.Error("cryptroot not found")
	}
}

// TestInitramfsDevices: the devices under / and /usr; cryptroot opens a
// volume among them, or one whose line says initramfs.
func TestInitramfsDevices(t *testing.T) {
	s := loadertest.New(t, "")
	// vda (253:0) holds /; /usr is on tmpfs, which has no device.
	loadertest.Write(t, filepath.Join(s.ProcDir, "self", "mountinfo"),
		"1 0 253:0 / / rw - ext4 /dev/vda rw\n2 1 0:21 / /usr rw - tmpfs tmpfs rw\n")
	got, err := InitramfsDevices(s.Sys, s.ProcDir)
	if err != nil || len(got) != 1 || !got["vda"] {
		t.Fatalf("InitramfsDevices = %v, %v", got, err)
	}
	o := Openers{Cryptroot: true}
	e := Parse([]byte("data UUID=x none luks,initramfs\n")).Entries()[0]
	for _, tc := range []struct {
		o      Openers
		mapped string
		e      *Entry
		want   bool
	}{
		{o, "vda", nil, true},
		{o, "dm-1", nil, false},
		{o, "dm-1", &e, true},
		{Openers{}, "vda", &e, false},
	} {
		if got := tc.o.InInitramfs(tc.mapped, tc.e, got); got != tc.want {
			t.Errorf("InInitramfs(%+v, %s, %v) = %v", tc.o, tc.mapped, tc.e, got)
		}
	}
	if err := os.Remove(filepath.Join(s.ProcDir, "self", "mountinfo")); err != nil {
		t.Fatal(err)
	}
	if _, err := InitramfsDevices(s.Sys, s.ProcDir); err == nil {
		t.Error("no error without a mount table")
	}
}
