package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sys is a view of the block devices of a system: its sysfs and its device
// nodes. Tests point it at fake trees.
type Sys struct {
	// SysDir is where sysfs is mounted, normally /sys.
	SysDir string
	// DevDir holds the device nodes, normally /dev.
	DevDir string
}

// Host is the running system.
func Host() Sys { return Sys{SysDir: "/sys", DevDir: "/dev"} }

// Device is a block device known to sysfs.
type Device struct {
	// Name is the kernel name, e.g. "vda1" or "dm-0".
	Name string
	// Path is the device node.
	Path string
}

// List returns the block devices in sysfs order, skipping those of size zero
// (empty loop devices and drives), which hold nothing to probe.
func (s Sys) List() ([]Device, error) {
	dir := filepath.Join(s.SysDir, "class", "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("blockdev: %w", err)
	}
	var devs []Device
	for _, e := range ents {
		size, err := os.ReadFile(filepath.Join(dir, e.Name(), "size"))
		if err == nil && strings.TrimSpace(string(size)) == "0" {
			continue
		}
		devs = append(devs, Device{Name: e.Name(), Path: filepath.Join(s.DevDir, e.Name())})
	}
	return devs, nil
}

// Match selects devices by what their superblock says.
type Match func(Info) bool

// ByUUID matches a filesystem or LUKS UUID, ignoring case.
func ByUUID(uuid string) Match {
	return func(i Info) bool { return strings.EqualFold(i.UUID, uuid) }
}

// ByLabel matches a label exactly.
func ByLabel(label string) Match {
	return func(i Info) bool { return i.Label == label }
}

// ErrNotFound means no device matched.
var ErrNotFound = errors.New("no such device")

// Find returns the first device whose superblock matches. Devices that
// cannot be read are passed over: an unreadable device is not the target.
func (s Sys) Find(m Match) (Device, Info, error) {
	devs, err := s.List()
	if err != nil {
		return Device{}, Info{}, err
	}
	for _, d := range devs {
		info, err := ProbePath(d.Path)
		if err == nil && m(info) {
			return d, info, nil
		}
	}
	return Device{}, Info{}, ErrNotFound
}

// Wait polls Find until a device matches or ctx ends. Without udev there is
// no event to wait for, and drivers probe asynchronously, so polling is the
// simple, dependable choice.
func (s Sys) Wait(ctx context.Context, m Match, every time.Duration) (Device, Info, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		d, info, err := s.Find(m)
		if !errors.Is(err, ErrNotFound) {
			return d, info, err
		}
		select {
		case <-ctx.Done():
			return Device{}, Info{}, fmt.Errorf("blockdev: %w: %w", ErrNotFound, ctx.Err())
		case <-t.C:
		}
	}
}

// Resolve finds the device for a kdump.conf-style spec: UUID=…, LABEL=… or
// a device path.
func (s Sys) Resolve(spec string) (Device, Info, error) {
	var (
		d    Device
		info Info
		err  error
	)
	switch {
	case strings.HasPrefix(spec, "UUID="):
		d, info, err = s.Find(ByUUID(strings.TrimPrefix(spec, "UUID=")))
	case strings.HasPrefix(spec, "LABEL="):
		d, info, err = s.Find(ByLabel(strings.TrimPrefix(spec, "LABEL=")))
	default:
		d, err = s.byPath(spec)
		if err == nil {
			info, err = ProbePath(d.Path)
		}
	}
	if err != nil {
		return Device{}, Info{}, fmt.Errorf("blockdev: %s: %w", spec, err)
	}
	return d, info, nil
}

// byPath maps a device node (or a symlink to one, as in /dev/disk/by-*) to
// its sysfs name through its device number.
func (s Sys) byPath(p string) (Device, error) {
	maj, min, err := devNumber(p)
	if err != nil {
		return Device{}, err
	}
	d, err := s.ByNumber(maj, min)
	if err != nil {
		return Device{}, err
	}
	d.Path = p
	return d, nil
}

// ByNumber returns the block device with device number major:minor, as
// mountinfo gives it. Its Path is the node of its kernel name in DevDir.
func (s Sys) ByNumber(major, minor uint32) (Device, error) {
	link, err := filepath.EvalSymlinks(filepath.Join(s.SysDir, "dev", "block", fmt.Sprintf("%d:%d", major, minor)))
	if err != nil {
		return Device{}, fmt.Errorf("blockdev: %d:%d is not a block device known to sysfs: %w", major, minor, err)
	}
	name := filepath.Base(link)
	return Device{Name: name, Path: filepath.Join(s.DevDir, name)}, nil
}

// Number returns the device number of the block device name (vda1).
func (s Sys) Number(name string) (major, minor uint32, err error) {
	b, err := os.ReadFile(filepath.Join(s.SysDir, "class", "block", name, "dev"))
	if err != nil {
		return 0, 0, fmt.Errorf("blockdev: %w", err)
	}
	a, m, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(m, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("blockdev: %s: device number %q is not major:minor", name, b)
	}
	return uint32(ma), uint32(mi), nil
}

// Size returns the size of the block device name (vda1), in bytes.
func (s Sys) Size(name string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(s.SysDir, "class", "block", name, "size"))
	if err != nil {
		return 0, fmt.Errorf("blockdev: %w", err)
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || sectors > 1<<54 {
		return 0, fmt.Errorf("blockdev: size of %s: %q is not a number of sectors", name, b)
	}
	return sectors * 512, nil
}

// Stack returns name and every device below it: the whole disk of a
// partition, and the slaves of a device-mapper or md device, recursively,
// each once, top first.
func (s Sys) Stack(name string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var walk func(string, int) error
	walk = func(n string, depth int) error {
		if seen[n] {
			return nil
		}
		if depth > 16 {
			return fmt.Errorf("blockdev: %s: device stack deeper than 16", name)
		}
		seen[n] = true
		out = append(out, n)
		dir, err := filepath.EvalSymlinks(filepath.Join(s.SysDir, "class", "block", n))
		if err != nil {
			return fmt.Errorf("blockdev: %s: %w", n, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			if err := walk(filepath.Base(filepath.Dir(dir)), depth+1); err != nil {
				return err
			}
		}
		slaves, err := os.ReadDir(filepath.Join(dir, "slaves"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("blockdev: %s: %w", n, err)
		}
		for _, sl := range slaves {
			if err := walk(sl.Name(), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(name, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// Modules returns the kernel modules of the drivers that the devices in the
// stack of name hang off: for every device, the driver of each ancestor in
// the sysfs device tree (e.g. virtio_blk, then virtio_pci). Built-in drivers
// are listed too when sysfs names a module for them; the caller filters
// those.
func (s Sys) Modules(name string) ([]string, error) {
	stack, err := s.Stack(name)
	if err != nil {
		return nil, err
	}
	devices := filepath.Join(s.SysDir, "devices")
	var mods []string
	seen := map[string]bool{}
	for _, n := range stack {
		dir, err := filepath.EvalSymlinks(filepath.Join(s.SysDir, "class", "block", n))
		if err != nil {
			return nil, fmt.Errorf("blockdev: %s: %w", n, err)
		}
		for ; strings.HasPrefix(dir, devices+"/"); dir = filepath.Dir(dir) {
			mod, err := filepath.EvalSymlinks(filepath.Join(dir, "driver", "module"))
			if err != nil {
				continue
			}
			if m := filepath.Base(mod); !seen[m] {
				seen[m] = true
				mods = append(mods, m)
			}
		}
	}
	return mods, nil
}
