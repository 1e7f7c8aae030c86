package mounts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const mountinfo = `22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw
23 22 0:21 / /proc rw,nosuid shared:2 - proc proc rw
24 22 253:2 / /var rw,relatime shared:3 - xfs /dev/mapper/var rw
25 24 0:30 / /var/tmp rw - tmpfs tmpfs rw
26 22 8:1 /exports/crash /srv/dumps\040here rw - ext4 /dev/sda1 rw
27 22 0:45 /@home /home rw - btrfs /dev/sdb1 rw,subvol=/@home
28 22 8:2 / /var rw - ext4 /dev/sda2 rw
`

func table(t *testing.T) Table {
	t.Helper()
	tab, err := Parse(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestParse(t *testing.T) {
	tab := table(t)
	if len(tab) != 7 {
		t.Fatalf("%d mounts", len(tab))
	}
	m := tab[4]
	if m.ID != 26 || m.Parent != 22 || m.Major != 8 || m.Minor != 1 || m.Root != "/exports/crash" ||
		m.Point != "/srv/dumps here" || m.FSType != "ext4" || m.Source != "/dev/sda1" {
		t.Errorf("mount = %+v", m)
	}
	for _, bad := range []string{"22 1 253:1 / / rw\n", "x 1 253:1 / / rw - ext4 /dev/x rw\n", "22 1 2531 / / rw - ext4 /dev/x rw\n"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

// TestHolding: the longest mount point wins, the last mount on a point
// hides the earlier ones, and the path becomes one on that filesystem.
func TestHolding(t *testing.T) {
	tab := table(t)
	for _, tc := range []struct {
		path, point, source, inFS string
	}{
		{"/var/crash", "/var", "/dev/sda2", "/crash"},
		{"/var", "/var", "/dev/sda2", "/"},
		{"/variable/crash", "/", "/dev/mapper/root", "/variable/crash"},
		{"/var/tmp/x", "/var/tmp", "tmpfs", "/x"},
		{"/srv/dumps here/a", "/srv/dumps here", "/dev/sda1", "/exports/crash/a"},
		{"/home/u", "/home", "/dev/sdb1", "/@home/u"},
	} {
		m, ok := tab.Holding(tc.path)
		if !ok || m.Point != tc.point || m.Source != tc.source || m.InFS(tc.path) != tc.inFS {
			t.Errorf("Holding(%s) = %+v (in its filesystem %s), want %s from %s, %s", tc.path, m, m.InFS(tc.path), tc.point, tc.source, tc.inFS)
		}
	}
	if _, ok := (Table{}).Holding("/var"); ok {
		t.Error("empty table holds /var")
	}
}

func TestOfDeviceHere(t *testing.T) {
	tab := table(t)
	ms := tab.OfDevice(8, 1)
	if len(ms) != 1 {
		t.Fatalf("OfDevice(8:1) = %+v", ms)
	}
	if p, ok := ms[0].Here("/exports/crash/host-1"); !ok || p != "/srv/dumps here/host-1" {
		t.Errorf("Here = %q, %v", p, ok)
	}
	if _, ok := ms[0].Here("/var/crash"); ok {
		t.Error("a bind mount of /exports/crash shows /var/crash")
	}
	if p, ok := tab.OfDevice(253, 1)[0].Here("/var/crash"); !ok || p != "/var/crash" {
		t.Errorf("Here on / = %q, %v", p, ok)
	}
}

// TestRealPath: symlinks resolve, and a path that does not exist yet keeps
// its missing tail.
func TestRealPath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "srv", "crash"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "srv"), filepath.Join(dir, "var")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../data/dumps", filepath.Join(dir, "srv", "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop", filepath.Join(dir, "loop")); err != nil {
		t.Fatal(err)
	}
	if _, err := RealPath(filepath.Join(dir, "loop", "x")); err == nil {
		t.Error("a symlink loop resolved")
	}
	for in, want := range map[string]string{
		dir + "/var/crash":         dir + "/srv/crash",
		dir + "/var/crash/new/dir": dir + "/srv/crash/new/dir",
		dir + "/missing/x":         dir + "/missing/x",
		dir + "/var/dangling/a":    dir + "/data/dumps/a",
	} {
		if got, err := RealPath(in); err != nil || got != want {
			t.Errorf("RealPath(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}

func TestRead(t *testing.T) {
	proc := t.TempDir()
	if _, err := Read(proc); err == nil {
		t.Error("Read without mountinfo succeeded")
	}
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(mountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	if tab, err := Read(proc); err != nil || len(tab) != 7 {
		t.Errorf("Read = %d mounts, %v", len(tab), err)
	}
	if tab, err := Read("/proc"); err != nil || len(tab) == 0 {
		t.Errorf("Read(/proc) = %d mounts, %v", len(tab), err)
	}
}
