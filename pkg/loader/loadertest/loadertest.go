// Package loadertest makes fake systems for the tests of the first
// kernel's verbs: a sysfs with one virtio disk vda (device 253:0) holding
// an ext4 filesystem, a module tree, a kernel image, a kdumpinit, a /proc
// and a ukdump.conf, all below one temporary directory. The host's own
// /sys and /proc are never read.
package loadertest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/bzimage/bzimagetest"
)

// UUID is the filesystem UUID of vda.
const UUID = "12345678-9abc-def0-0123-456789abcdef"

// Release is the release of the fake kernel image; InitSize its init_size.
const (
	Release  = "7.3.0-test"
	InitSize = 20 << 20
)

// System is a fake system: where each part of it is.
type System struct {
	Root string
	Sys  blockdev.Sys
	// ConfigFile holds the ukdump.conf given to New.
	ConfigFile, Kernel, ModuleDir, Init, ProcDir, StateFile string
}

// New makes a fake system with conf as its ukdump.conf.
func New(t testing.TB, conf string) System {
	t.Helper()
	root := t.TempDir()
	s := System{
		Root:       root,
		Sys:        blockdev.Sys{SysDir: filepath.Join(root, "sys"), DevDir: filepath.Join(root, "dev")},
		ConfigFile: filepath.Join(root, "ukdump.conf"),
		Kernel:     filepath.Join(root, "vmlinuz"),
		ModuleDir:  filepath.Join(root, "modules"),
		Init:       filepath.Join(root, "kdumpinit"),
		ProcDir:    filepath.Join(root, "proc"),
		StateFile:  filepath.Join(root, "state.json"),
	}
	sys := s.Sys.SysDir
	s.Disk(t, "vda", "253:0", 4)
	link(t, "../../../../module/virtio_blk", filepath.Join(sys, "bus/virtio/drivers/virtio_blk/module"))
	Write(t, filepath.Join(sys, "module/virtio_blk/initstate"), "live\n")
	// crc32c is built in: sysfs has the module directory but no initstate.
	Write(t, filepath.Join(sys, "module/crc32c_intel/parameters/x"), "")
	Write(t, filepath.Join(s.Sys.DevDir, "vda"), string(Ext4([16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})))

	Write(t, filepath.Join(s.ModuleDir, "kernel/virtio_blk.ko"), "x")
	Write(t, filepath.Join(s.ModuleDir, "kernel/nvme.ko"), "x")
	Write(t, filepath.Join(s.ModuleDir, "modules.dep"), "kernel/virtio_blk.ko:\nkernel/nvme.ko:\n")
	Write(t, filepath.Join(s.ModuleDir, "modules.builtin"), "kernel/fs/ext4/ext4.ko\n")
	Write(t, s.Kernel, string(bzimagetest.Image(0x020f, InitSize, Release)))
	Write(t, s.Init, string(TinyELF()))
	Write(t, filepath.Join(s.ProcDir, "modules"), "virtio_blk 20480 0 - Live 0x0\n")
	Write(t, s.ConfigFile, conf)
	return s
}

// Disk adds a virtio disk name with device number devno ("253:16") at
// PCI slot slot (4 for vda), with its driver links; its node is empty
// until Write or LinkNode fills it.
func (s System) Disk(t testing.TB, name, devno string, slot int) {
	t.Helper()
	sys := s.Sys.SysDir
	pci := fmt.Sprintf("devices/pci0000:00/0000:00:%02x.0", slot)
	virtio := fmt.Sprintf("virtio%d", slot-3)
	dir := filepath.Join(pci, virtio, "block", name)
	Write(t, filepath.Join(sys, dir, "size"), "2048\n")
	Write(t, filepath.Join(sys, dir, "dev"), devno+"\n")
	link(t, "../../"+dir, filepath.Join(sys, "class/block", name))
	link(t, "../../"+dir, filepath.Join(sys, "dev/block", devno))
	link(t, "../../../../bus/virtio/drivers/virtio_blk", filepath.Join(sys, pci, virtio, "driver"))
}

// Mapping adds the device-mapper device name (dm-0) with device number
// devno, mapping name dmName and UUID dmUUID, on the given slaves.
func (s System) Mapping(t testing.TB, name, devno, dmName, dmUUID string, slaves ...string) {
	t.Helper()
	sys := s.Sys.SysDir
	dir := filepath.Join("devices/virtual/block", name)
	Write(t, filepath.Join(sys, dir, "size"), "2048\n")
	Write(t, filepath.Join(sys, dir, "dev"), devno+"\n")
	Write(t, filepath.Join(sys, dir, "dm/name"), dmName+"\n")
	Write(t, filepath.Join(sys, dir, "dm/uuid"), dmUUID+"\n")
	link(t, "../../"+dir, filepath.Join(sys, "class/block", name))
	link(t, "../../"+dir, filepath.Join(sys, "dev/block", devno))
	for _, sl := range slaves {
		link(t, "../../../../../class/block/"+sl, filepath.Join(sys, dir, "slaves", sl))
	}
}

// LinkNode makes the node of device name a link to file, e.g. an image
// made by a tool.
func (s System) LinkNode(t testing.TB, name, file string) {
	t.Helper()
	link(t, file, filepath.Join(s.Sys.DevDir, name))
}

// Ext4 is the start of an ext4 filesystem with the given UUID: enough
// for blockdev's probe.
func Ext4(uuid [16]byte) []byte {
	sb := make([]byte, 4096)
	binary.LittleEndian.PutUint16(sb[1024+56:], 0xEF53)
	copy(sb[1024+104:], uuid[:])
	return sb
}

// Kexec writes the crash kernel files of sysfs: loaded or not, and the
// reservation.
func (s System) Kexec(t testing.TB, loaded bool, reserved uint64) {
	t.Helper()
	l := "0\n"
	if loaded {
		l = "1\n"
	}
	Write(t, filepath.Join(s.Sys.SysDir, "kernel", "kexec_crash_loaded"), l)
	Write(t, filepath.Join(s.Sys.SysDir, "kernel", "kexec_crash_size"), strconv.FormatUint(reserved, 10)+"\n")
}

// Mounts writes /proc/self/mountinfo: / on tmpfs, then each of mounts, a
// "point fstype major:minor" line with point below Root (symlinks
// resolved), whose directory it makes.
func (s System) Mounts(t testing.TB, mounts ...string) {
	t.Helper()
	root, err := filepath.EvalSymlinks(s.Root)
	must(t, err)
	info := "1 0 0:20 / / rw - tmpfs tmpfs rw\n"
	for i, m := range mounts {
		f := strings.Fields(m)
		point := filepath.Join(root, f[0])
		must(t, os.MkdirAll(point, 0o755))
		info += strings.Join([]string{strconv.Itoa(i + 2), "1", f[2], "/", point, "rw - " + f[1], "/dev/x rw\n"}, " ")
	}
	Write(t, filepath.Join(s.ProcDir, "self", "mountinfo"), info)
}

// Write makes the file p with content, and its directories.
func Write(t testing.TB, p, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o644))
}

// TinyELF is an ELF executable header without an interpreter: enough for
// mkinitrd to take it as a static kdumpinit.
func TinyELF() []byte {
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	must(nil, binary.Write(&b, binary.LittleEndian, &h))
	return b.Bytes()
}

func link(t testing.TB, target, p string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.Symlink(target, p))
}

func must(t testing.TB, err error) {
	if err == nil {
		return
	}
	if t == nil {
		panic(err)
	}
	t.Helper()
	t.Fatal(err)
}
