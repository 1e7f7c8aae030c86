// Package lvmtest makes LVM2 physical volumes for tests with the real
// lvm2 tools, on image files attached to loop devices. Nothing is ever
// activated (global/activation=0), so the host needs no device-mapper;
// every command sees only the test's own loop devices (--devices), and
// lvm2 keeps no backups or archives of the test VGs.
package lvmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// need skips the test without what it needs, or fails it when $CI is
// set, where a missing tool must not turn tests green.
func need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (needed in CI)", what)
	}
	t.Skip(what)
}

func tool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Host is a set of loop devices lvm2 commands may use.
type Host struct {
	lvm, losetup string
	// Images are the image files, Loops their loop devices, in order.
	Images, Loops []string
}

// New makes n image files of size bytes each and attaches them to loop
// devices, detached again when the test ends. It needs root, losetup and
// lvm2.
func New(t testing.TB, n int, size int64) *Host {
	t.Helper()
	h := &Host{lvm: tool("lvm"), losetup: tool("losetup")}
	need(t, os.Geteuid() == 0, "making loop devices needs root")
	need(t, h.losetup != "", "losetup not found (util-linux)")
	need(t, h.lvm != "", "lvm not found (install lvm2)")
	need(t, fileExists("/dev/loop-control"), "no /dev/loop-control")
	dir := t.TempDir()
	for i := 0; i < n; i++ {
		img := filepath.Join(dir, "pv"+string(rune('0'+i))+".img")
		f, err := os.Create(img)
		if err == nil {
			err = f.Truncate(size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(h.losetup, "-f", "--show", img).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup %s: %v\n%s", img, err, out)
		}
		loop := strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command(h.losetup, "-d", loop).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
			}
		})
		h.Images, h.Loops = append(h.Images, img), append(h.Loops, loop)
	}
	return h
}

// LVM runs "lvm <command> <args...>" on the host's loop devices only and
// returns its standard output; a failure ends the test.
func (h *Host) LVM(t testing.TB, command string, args ...string) string {
	t.Helper()
	full := []string{command,
		"--config", "global/activation=0 backup/backup=0 backup/archive=0",
		"--devices", strings.Join(h.Loops, ",")}
	cmd := exec.Command(h.lvm, append(full, args...)...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("lvm %s %s: %v\n%s%s", command, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// Report runs an lvm2 reporting command (pvs, vgs, lvs) with the given
// options and returns its rows, fields split at '|', values in sectors
// without units.
func (h *Host) Report(t testing.TB, command string, args ...string) [][]string {
	t.Helper()
	out := h.LVM(t, command, append([]string{"--noheadings", "--nosuffix", "--units", "s", "--separator", "|"}, args...)...)
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fields := strings.Split(line, "|")
			for i := range fields {
				fields[i] = strings.TrimSpace(fields[i])
			}
			rows = append(rows, fields)
		}
	}
	return rows
}

// Image returns the content of the i-th image file: what the PV holds.
func (h *Host) Image(t testing.TB, i int) []byte {
	t.Helper()
	b, err := os.ReadFile(h.Images[i])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Backup returns the metadata text of vg as vgcfgbackup writes it.
func (h *Host) Backup(t testing.TB, vg string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), vg+".vg")
	h.LVM(t, "vgcfgbackup", "-f", f, vg)
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Restore writes text as the metadata of vg with vgcfgrestore, which
// checks it as lvm2 checks its own: a way to make layouts that need
// device-mapper to create (snapshots) on a host without it.
func (h *Host) Restore(t testing.TB, vg, text string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), vg+".vg")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	h.LVM(t, "vgcfgrestore", "-f", f, vg)
}
