package dm

import (
	"fmt"
	"os"
	"strings"
	"unsafe"

	"github.com/anatol/devmapper.go"
	"golang.org/x/sys/unix"
)

// Target is one line of a device-mapper table.
type Target struct {
	// Start and Length place the line in the mapped device, in 512-byte
	// sectors.
	Start, Length uint64
	// Type is the target type, e.g. "linear" or "striped".
	Type string
	// Params are the target's parameters as dmsetup table prints them,
	// e.g. "8:3 2048" for linear.
	Params string
}

// Table is a mapping made of plain target lines (no keys: CreateCrypt
// is for dm-crypt).
type Table struct {
	// Name is the mapping name; the device appears as /dev/mapper/<Name>.
	Name string
	// UUID is the device-mapper UUID (e.g. LVM-<vg id><lv id>).
	UUID    string
	Targets []Target
}

// Create creates the mapping, loads its table, activates it and makes
// /dev/mapper/<name>. It returns the node's path. On failure nothing is
// left behind.
//
// devmapper.go's Table interface has unexported methods, so no target
// type it lacks (striped) can be passed to its Load; the table load is
// this package's own ioctl, and creating, resuming and removing stay with
// devmapper.go.
func Create(t Table) (string, error) {
	buf, err := loadBuffer(t)
	if err != nil {
		return "", err
	}
	if err := devmapper.Create(t.Name, t.UUID); err != nil {
		return "", fmt.Errorf("dm: create %s: %w", t.Name, err)
	}
	if err := control(unix.DM_TABLE_LOAD, buf); err != nil {
		devmapper.Remove(t.Name)
		return "", fmt.Errorf("dm: load the table of %s (%s): %w", t.Name, describe(t.Targets), err)
	}
	if err := devmapper.Resume(t.Name); err != nil {
		devmapper.Remove(t.Name)
		return "", fmt.Errorf("dm: resume %s: %w", t.Name, err)
	}
	node, err := makeNode(t.Name)
	if err != nil {
		devmapper.Remove(t.Name)
		return "", err
	}
	return node, nil
}

// describe gives the table as dmsetup prints it, for error messages.
func describe(ts []Target) string {
	var lines []string
	for _, t := range ts {
		lines = append(lines, fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, t.Params))
	}
	return strings.Join(lines, "; ")
}

// loadBuffer lays out the DM_TABLE_LOAD argument: struct dm_ioctl, then
// for each target a struct dm_target_spec and its NUL-terminated
// parameters, padded to 8 bytes; each spec's next is the distance from it
// to the following one. It checks what the kernel would refuse less
// clearly: names too long, a gap in the table, parameters with a NUL.
func loadBuffer(t Table) ([]byte, error) {
	switch {
	case t.Name == "" || len(t.Name) >= unix.DM_NAME_LEN || strings.ContainsAny(t.Name, "/\x00"):
		return nil, fmt.Errorf("dm: mapping name %q is empty, too long or holds '/'", t.Name)
	case len(t.UUID) >= unix.DM_UUID_LEN || strings.ContainsRune(t.UUID, 0):
		return nil, fmt.Errorf("dm: %s: UUID %q is too long", t.Name, t.UUID)
	case len(t.Targets) == 0:
		return nil, fmt.Errorf("dm: %s: empty table", t.Name)
	}
	size := unix.SizeofDmIoctl
	next := uint64(0)
	for i, tg := range t.Targets {
		switch {
		case tg.Start != next || tg.Length == 0:
			return nil, fmt.Errorf("dm: %s: line %d covers %d+%d, want a line from sector %d on", t.Name, i+1, tg.Start, tg.Length, next)
		case tg.Type == "" || len(tg.Type) >= unix.DM_MAX_TYPE_NAME || strings.ContainsRune(tg.Type, 0):
			return nil, fmt.Errorf("dm: %s: line %d: bad target type %q", t.Name, i+1, tg.Type)
		case strings.ContainsRune(tg.Params, 0):
			return nil, fmt.Errorf("dm: %s: line %d: parameters hold a NUL", t.Name, i+1)
		}
		next += tg.Length
		size += specSize(tg)
	}
	buf := make([]byte, size)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	hdr.Version = [3]uint32{4, 0, 0}
	hdr.Data_size = uint32(size)
	hdr.Data_start = unix.SizeofDmIoctl
	hdr.Target_count = uint32(len(t.Targets))
	copy(hdr.Name[:], t.Name)
	off := unix.SizeofDmIoctl
	for _, tg := range t.Targets {
		spec := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[off]))
		spec.Sector_start = tg.Start
		spec.Length = tg.Length
		spec.Next = uint32(specSize(tg))
		copy(spec.Target_type[:], tg.Type)
		copy(buf[off+unix.SizeofDmTargetSpec:], tg.Params)
		off += specSize(tg)
	}
	return buf, nil
}

func specSize(t Target) int {
	return unix.SizeofDmTargetSpec + (len(t.Params)+1+7)&^7
}

// control issues one ioctl on /dev/mapper/control.
func control(cmd uintptr, buf []byte) error {
	ctl, err := os.Open("/dev/mapper/control")
	if err != nil {
		return err
	}
	defer ctl.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), cmd, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return errno
	}
	return nil
}
