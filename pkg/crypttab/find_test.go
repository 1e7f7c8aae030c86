package crypttab

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ukdump/ukdump/pkg/blockdev"
)

// TestFind: a volume's line is the one named as its mapping, else the one
// whose device spec is its device, by LUKS UUID or through /dev links.
func TestFind(t *testing.T) {
	dir := t.TempDir()
	sys := blockdev.Sys{SysDir: filepath.Join(dir, "sys"), DevDir: filepath.Join(dir, "dev")}
	for _, d := range []string{"disk/by-partuuid", "disk/by-partlabel", "disk/by-label", "disk/by-id"} {
		if err := os.MkdirAll(filepath.Join(sys.DevDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sys.DevDir, "vda2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"disk/by-partuuid/9a8b7c6d-02": "../../vda2",
		"disk/by-partlabel/system":     "../../vda2",
		"disk/by-label/sys":            "../../vda2",
		"disk/by-id/virtio-abc-part2":  "../../vda2",
	} {
		if err := os.Symlink(target, filepath.Join(sys.DevDir, link)); err != nil {
			t.Fatal(err)
		}
	}
	v := Volume{Name: "luks-0a1b", UUID: "0a1b2c3d-0000-4000-8000-000000000001", Device: filepath.Join(sys.DevDir, "vda2")}
	for _, tc := range []struct {
		name, tab string
		line      int // -1: none
	}{
		{"by name", "other UUID=x none\nluks-0a1b /dev/sdz none luks\n", 1},
		{"name before device", "vda2_crypt /dev/vda2 none\nluks-0a1b /dev/sdz none\n", 1},
		{"UUID", "# c\nvda2_crypt UUID=0A1B2C3D-0000-4000-8000-000000000001 none luks\n", 1},
		{"quoted UUID", `vda2_crypt UUID="0a1b2c3d-0000-4000-8000-000000000001"` + "\n", 0},
		{"device node", "vda2_crypt /dev/vda2\n", 0},
		{"by-id link", "vda2_crypt /dev/disk/by-id/virtio-abc-part2 none\n", 0},
		{"PARTUUID", "vda2_crypt PARTUUID=9A8B7C6D-02 none\n", 0},
		{"PARTLABEL", "vda2_crypt PARTLABEL=system none\n", 0},
		{"LABEL", "vda2_crypt LABEL=sys none\n", 0},
		{"other device", "vda3_crypt /dev/vda3 none\nx UUID=0a1b2c3d-0000-4000-8000-000000000002\n", -1},
		{"file", "img /srv/disk.img none\n", -1},
		{"comment", "#luks-0a1b UUID=0a1b2c3d-0000-4000-8000-000000000001\n", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := Parse([]byte(tc.tab)).Find(sys, v)
			switch {
			case tc.line < 0 && ok:
				t.Errorf("found line %d, want none", e.Line)
			case tc.line >= 0 && (!ok || e.Line != tc.line):
				t.Errorf("found %v line %d, want line %d", ok, e.Line, tc.line)
			}
		})
	}
}
