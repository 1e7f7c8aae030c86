package loader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/loader/loadertest"
)

// autoSystem is fakeSystem with conf, in which ROOT stands for the fake
// system's root, and a mount table: / is tmpfs, then mounts ("point fstype
// major:minor", point below the root).
func autoSystem(t *testing.T, conf string, mounts ...string) (Options, string) {
	t.Helper()
	s := loadertest.New(t, "")
	root, err := filepath.EvalSymlinks(s.Root)
	if err != nil {
		t.Fatal(err)
	}
	loadertest.Write(t, s.ConfigFile, strings.ReplaceAll(conf, "ROOT", root))
	s.Mounts(t, mounts...)
	return options(s), root
}

// TestTargetHoldingPath: without a target line the dump goes to the
// filesystem holding path, and path becomes one on that filesystem.
func TestTargetHoldingPath(t *testing.T) {
	o, root := autoSystem(t, "path ROOT/var/crash\n", "var ext4 253:0")
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
	o, root := autoSystem(t, "path ROOT/var/crash\n", "data ext4 253:0")
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
		mounts []string
		want   string
	}{
		{"tmpfs", nil, "is tmpfs; ukdump dumps to ext4, ext3, ext2, xfs, btrfs: add a target line"},
		{"no block device", []string{"var ext4 8:1"}, "8:1 is not a block device known to sysfs"},
		{"wrong type", []string{"var xfs 253:0"}, "is mounted as xfs but holds ext4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := autoSystem(t, "path ROOT/var/crash\n", tc.mounts...)
			_, err := Prepare(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "no target line") {
				t.Errorf("Prepare error = %v, want %q", err, tc.want)
			}
		})
	}
}
