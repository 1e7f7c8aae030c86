package crypttab

import (
	"path/filepath"
	"strings"

	"github.com/ukdump/ukdump/pkg/blockdev"
)

// Volume is an open LUKS volume, as crypttab may name it.
type Volume struct {
	// Name is the mapping's name, UUID the LUKS UUID, Device the node
	// holding the LUKS header (/dev/vda2).
	Name, UUID, Device string
}

// Find returns the line of v: the line named as v's mapping, else the
// first whose device is v's (crypttab's name is the mapping's name when
// the line opened the volume, but an initramfs may have opened it under
// another). sys stands for /dev (its DevDir) and the block devices.
func (f *File) Find(sys blockdev.Sys, v Volume) (Entry, bool) {
	es := f.Entries()
	for _, e := range es {
		if e.Name == v.Name {
			return e, true
		}
	}
	for _, e := range es {
		if sameDevice(sys, e.Device, v) {
			return e, true
		}
	}
	return Entry{}, false
}

// sameDevice reports whether the device spec of a crypttab line is v's
// device: UUID= is the LUKS UUID; LABEL=, PARTUUID= and PARTLABEL= are
// udev's links in /dev/disk; a /dev path is followed through its links.
func sameDevice(sys blockdev.Sys, spec string, v Volume) bool {
	key, val, ok := strings.Cut(spec, "=")
	val = strings.Trim(val, `"`)
	var path string
	switch {
	case !ok && strings.HasPrefix(spec, "/dev/"):
		path = filepath.Join(sys.DevDir, strings.TrimPrefix(spec, "/dev/"))
	case key == "UUID":
		return strings.EqualFold(val, v.UUID)
	case key == "LABEL":
		path = filepath.Join(sys.DevDir, "disk", "by-label", val)
		if _, info, err := sys.Find(blockdev.ByLabel(val)); err == nil {
			return strings.EqualFold(info.UUID, v.UUID)
		}
	case key == "PARTUUID":
		path = filepath.Join(sys.DevDir, "disk", "by-partuuid", strings.ToLower(val))
	case key == "PARTLABEL":
		path = filepath.Join(sys.DevDir, "disk", "by-partlabel", val)
	default:
		return false
	}
	a, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	b, err := filepath.EvalSymlinks(v.Device)
	return err == nil && a == b
}
