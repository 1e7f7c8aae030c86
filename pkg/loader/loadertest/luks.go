package loadertest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// Mapped is the block device of the mapping LUKS makes, and MappedNumber
// its device number, for mount tables.
const (
	Mapped       = "dm-0"
	MappedNumber = "254:0"
)

// LUKS turns vda into a LUKS volume (formatted by cryptsetup as lukstest
// does; the test is skipped without cryptsetup) that is open as the
// mapping name, dm-0, which now holds the ext4 filesystem of UUID. It
// returns the volume key and the header.
func (s System) LUKS(t testing.TB, name string, o lukstest.Options) ([]byte, *luks.Header) {
	t.Helper()
	vda := filepath.Join(s.Sys.DevDir, "vda")
	sb, err := os.ReadFile(vda)
	must(t, err)
	key, h := lukstest.Format(t, vda, 20<<20, o)
	sys := s.Sys.SysDir
	dm := filepath.Join(sys, "devices/virtual/block", Mapped)
	Write(t, filepath.Join(dm, "dev"), MappedNumber+"\n")
	Write(t, filepath.Join(dm, "size"), "2048\n")
	Write(t, filepath.Join(dm, "dm", "name"), name+"\n")
	must(t, os.MkdirAll(filepath.Join(dm, "slaves"), 0o755))
	for _, l := range [][2]string{
		{"../../../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda", filepath.Join(dm, "slaves", "vda")},
		{"../../devices/virtual/block/" + Mapped, filepath.Join(sys, "class/block", Mapped)},
		{"../../devices/virtual/block/" + Mapped, filepath.Join(sys, "dev/block", MappedNumber)},
	} {
		must(t, os.Symlink(l[0], l[1]))
	}
	Write(t, filepath.Join(s.Sys.DevDir, Mapped), string(sb))
	return key, h
}
