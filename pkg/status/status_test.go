package status

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/loader"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
)

// system is a fake machine whose ukdump.conf dumps to /crash on vda (ext4),
// mounted on <root>/var, with the crash kernel files of sysfs as given,
// and state (if not nil) as the last load's record.
func system(t *testing.T, loaded bool, reserved uint64, state *loader.State) (loader.Options, string) {
	t.Helper()
	s := loadertest.New(t, "ext4 UUID="+loadertest.UUID+"\npath /crash\n")
	s.Kexec(t, loaded, reserved)
	s.Mounts(t, "var ext4 253:0")
	if state != nil {
		b, err := json.Marshal(state)
		if err != nil {
			t.Fatal(err)
		}
		loadertest.Write(t, s.StateFile, string(b))
	}
	root, _ := filepath.EvalSymlinks(s.Root)
	return loader.Options{ConfigFile: s.ConfigFile, Sys: s.Sys, ProcDir: s.ProcDir, StateFile: s.StateFile}, root
}

func loadedState() *loader.State {
	return &loader.State{
		Kernel: "/boot/vmlinuz-7.3.0-test", Release: "7.3.0-test",
		Target: "ext4 UUID=" + loadertest.UUID + " on /dev/vda", TargetUUID: loadertest.UUID, TargetDevice: "/dev/vda",
		Path: "/crash", FinalAction: config.Reboot, FailureAction: config.Poweroff,
		InitramfsSize: 1600 << 10, LoadedAt: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		Volumes: []loader.VolumeState{{UUID: "aaaa", Name: "luks-aaaa", Transport: config.Kernel, Source: "logon key kdump-cryptsetup:vk-aaaa"}},
		LVM:     []loader.LVMState{{VG: "vg0", LV: "root", Seqno: 7}},
	}
}

// dump makes a dump directory under dir with files of the given sizes.
func dump(t *testing.T, dir, name string, age time.Duration, files map[string]int) {
	t.Helper()
	for f, n := range files {
		p := filepath.Join(dir, name, f)
		loadertest.Write(t, p, strings.Repeat("x", n))
		when := time.Now().Add(-age)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
}

func text(r *Report) string {
	var b strings.Builder
	r.Print(&b)
	return b.String()
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}
}

// TestReady: reserved, loaded, target present and mounted: ready, with the
// dumps listed newest first, complete or not.
func TestReady(t *testing.T) {
	o, root := system(t, true, 128<<20, loadedState())
	dir := filepath.Join(root, "var", "crash")
	dump(t, dir, "host-2026-04-01-00:00:00", 48*time.Hour, map[string]int{"vmcore": 3 << 20, "vmcore-dmesg.txt": 10})
	dump(t, dir, "host-2026-04-02-00:00:00", time.Hour, map[string]int{"vmcore-incomplete": 1 << 20, "vmcore-dmesg.txt": 10})
	dump(t, dir, "host-2026-04-03-00:00:00", time.Minute, map[string]int{"vmcore-dmesg.txt-incomplete": 10})
	dump(t, dir, "scripts", 0, map[string]int{"post.sh": 10})
	r := Gather(o, Env{})
	out := text(r)
	if !r.Ready() {
		t.Errorf("not ready: %q\n%s", r.Problems(), out)
	}
	wantLines(t, out,
		"reservation:  128 MiB\n",
		"crash kernel: loaded: 7.3.0-test (/boot/vmlinuz-7.3.0-test), at 2026-05-01 10:00:00 UTC, initramfs 1600 KiB\n",
		"on a crash: dump to /crash on ext4 UUID="+loadertest.UUID+" on /dev/vda (present), then reboot; poweroff if the dump fails\n",
		"LUKS volume luks-aaaa (UUID aaaa): key handed over (kernel transport, from logon key kdump-cryptsetup:vk-aaaa)\n",
		"LVM volume vg0/root: activated from the metadata on its PVs (seqno 7 at load; moved since: refused, run ukdump reload)\n",
		"target:       ext4 UUID="+loadertest.UUID+" on "+o.Sys.DevDir+"/vda: present, mounted on "+root+"/var\n",
		"dumps:        "+dir+" (/crash on the target), newest first:\n"+
			"  host-2026-04-03-00:00:00  0.0 MiB  no vmcore\n"+
			"  host-2026-04-02-00:00:00  1.0 MiB  incomplete (vmcore-incomplete), with vmcore-dmesg.txt\n"+
			"  host-2026-04-01-00:00:00  3.0 MiB  complete, with vmcore-dmesg.txt\n",
		"ready: a crash now writes a dump to /crash on ext4 UUID="+loadertest.UUID+" on /dev/vda, then takes final_action reboot\n",
	)
	if strings.Contains(out, "scripts") {
		t.Errorf("a directory without a dump is listed:\n%s", out)
	}
	if rel, ok := LoadedRelease(o.Sys.SysDir, o.StateFile); !ok || rel != "7.3.0-test" {
		t.Errorf("LoadedRelease = %q, %v", rel, ok)
	}
}

// TestNotReady: each reason a crash would give no dump is said, and the
// machine is not ready.
func TestNotReady(t *testing.T) {
	other := loadedState()
	other.TargetUUID = "00000000-0000-0000-0000-000000000000"
	for _, tc := range []struct {
		name     string
		loaded   bool
		reserved uint64
		state    *loader.State
		want     []string
	}{
		{"not loaded", false, 128 << 20, nil, []string{"crash kernel: not loaded\n", "  - no crash kernel loaded: run ukdump load (or systemctl start ukdump)\n"}},
		{"no reservation", false, 0, nil, []string{"reservation:  none: add crashkernel=<size> to the kernel command line and reboot"}},
		{"no record", true, 128 << 20, nil, []string{"ukdump load left no record of it"}},
		{"target gone", true, 128 << 20, other, []string{"(NOT FOUND on this machine's block devices)", "the loaded crash kernel's target (UUID=00000000-0000-0000-0000-000000000000) is on no block device",
			"ukdump.conf now says /crash on UUID=" + loadertest.UUID + "; the loaded crash kernel has /crash on UUID=00000000-0000-0000-0000-000000000000: run ukdump reload"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := system(t, tc.loaded, tc.reserved, tc.state)
			r := Gather(o, Env{})
			out := text(r)
			if r.Ready() {
				t.Errorf("ready:\n%s", out)
			}
			wantLines(t, out, append(tc.want, "NOT READY: a crash now would give no dump:\n")...)
			if _, ok := LoadedRelease(o.Sys.SysDir, o.StateFile); ok != (tc.loaded && tc.state != nil) {
				t.Errorf("LoadedRelease ok = %v", ok)
			}
		})
	}
}

// TestNoKexec: a kernel without crash dump support is said so in plain
// words, not with a sysfs error.
func TestNoKexec(t *testing.T) {
	o, _ := system(t, false, 0, nil)
	if err := os.RemoveAll(filepath.Join(o.Sys.SysDir, "kernel")); err != nil {
		t.Fatal(err)
	}
	r := Gather(o, Env{})
	out := text(r)
	wantLines(t, out, "this kernel cannot load a crash kernel: it was built without kexec crash dump support")
	if r.Ready() || strings.Contains(out, "kexec_crash") || strings.Contains(out, "no such file") {
		t.Errorf("status without kexec:\n%s", out)
	}
}

// TestTargetNotMounted: the dumps cannot be listed, and status says why.
func TestTargetNotMounted(t *testing.T) {
	o, _ := system(t, true, 128<<20, loadedState())
	loadertest.Write(t, filepath.Join(o.ProcDir, "self", "mountinfo"), "1 0 0:20 / / rw - tmpfs tmpfs rw\n")
	r := Gather(o, Env{})
	out := text(r)
	wantLines(t, out, ": present, not mounted\n", "dumps:        in /crash on the target, which is not mounted here: mount it to see them\n")
	if !r.Ready() {
		t.Errorf("an unmounted target is a fine target: %q", r.Problems())
	}
}

func TestTargetMissing(t *testing.T) {
	o, _ := system(t, false, 128<<20, nil)
	loadertest.Write(t, o.ConfigFile, "xfs LABEL=nowhere\n")
	wantLines(t, text(Gather(o, Env{})), "target:       not found: loader: dump target: blockdev: LABEL=nowhere: no such device\n")
}
