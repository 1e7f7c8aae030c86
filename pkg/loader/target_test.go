package loader

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// autoSystem is fakeSystem with a ukdump.conf without a target line, and a
// mount table: / is /dev/sda1 (unknown to sysfs), and mounts maps more
// mount points below the test's root to "fstype major:minor".
func autoSystem(t *testing.T, conf string, mounts map[string]string) (Options, string) {
	t.Helper()
	o := fakeSystem(t, "")
	root, err := filepath.EvalSymlinks(filepath.Dir(o.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	conf = strings.ReplaceAll(conf, "ROOT", root)
	if err := os.WriteFile(o.ConfigFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	info := "1 0 0:20 / / rw - tmpfs tmpfs rw\n"
	id := 2
	for point, what := range mounts {
		fstype, dev, _ := strings.Cut(what, " ")
		point = filepath.Join(root, point)
		if err := os.MkdirAll(point, 0o755); err != nil {
			t.Fatal(err)
		}
		info += strings.Join([]string{strconv.Itoa(id), "1", dev, "/", point, "rw - " + fstype, "/dev/x rw\n"}, " ")
		id++
	}
	if err := os.MkdirAll(filepath.Join(o.ProcDir, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.ProcDir, "self", "mountinfo"), []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	return o, root
}

// TestTargetHoldingPath: without a target line the dump goes to the
// filesystem holding path, and path becomes one on that filesystem.
func TestTargetHoldingPath(t *testing.T) {
	o, root := autoSystem(t, "path ROOT/var/crash\n", map[string]string{"var": "ext4 253:0"})
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Build.Config
	if c.Path != "/crash" || c.Target.UUID != uuid || c.Target.Spec != "UUID="+uuid || c.Target.FSType != "ext4" || p.Target.Device.Name != "vda" {
		t.Errorf("target %+v, path %s; want ext4 UUID=%s, /crash", c.Target, c.Path, uuid)
	}
	if got := p.Target.String(); !strings.Contains(got, "the filesystem holding "+root+"/var/crash") {
		t.Errorf("Target.String() = %q", got)
	}
	if got := strings.Join(p.Build.Modules, " "); got != "virtio_blk" {
		t.Errorf("modules = %q", got)
	}
}

// TestTargetHoldingSymlink: a symlinked dump directory is followed in the
// first kernel, to the filesystem it really is on.
func TestTargetHoldingSymlink(t *testing.T) {
	o, root := autoSystem(t, "path ROOT/var/crash\n", map[string]string{"data": "ext4 253:0"})
	if err := os.MkdirAll(filepath.Join(root, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "data", "dumps"), filepath.Join(root, "var", "crash")); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Build.Config.Path; got != "/dumps" {
		t.Errorf("path = %s, want /dumps", got)
	}
}

func TestTargetHoldingErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mounts map[string]string
		want   string
	}{
		{"tmpfs", nil, "is tmpfs; ukdump dumps to ext4, ext3, ext2, xfs, btrfs: add a target line"},
		{"no block device", map[string]string{"var": "ext4 8:1"}, "8:1 is not a block device known to sysfs"},
		{"wrong type", map[string]string{"var": "xfs 253:0"}, "is mounted as xfs but holds ext4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := autoSystem(t, "path ROOT/var/crash\n", tc.mounts)
			_, err := Prepare(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "no target line") {
				t.Errorf("Prepare error = %v, want %q", err, tc.want)
			}
		})
	}
}
