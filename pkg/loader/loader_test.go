package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/bzimage/bzimagetest"
)

const uuid = "12345678-9abc-def0-0123-456789abcdef"

// fakeSystem makes a sysfs with one virtio disk vda holding an ext4
// superblock, a module tree with virtio_blk, and a kernel file.
func fakeSystem(t *testing.T, conf string) Options {
	t.Helper()
	root := t.TempDir()
	sys, dev := filepath.Join(root, "sys"), filepath.Join(root, "dev")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(s), 0o644))
	}
	link := func(target, p string) {
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.Symlink(target, p))
	}
	vda := filepath.Join(sys, "devices/pci0000:00/0000:00:04.0/virtio1/block/vda")
	write(filepath.Join(vda, "size"), "2048\n")
	link("../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda", filepath.Join(sys, "class/block/vda"))
	link("../../../../bus/virtio/drivers/virtio_blk", filepath.Join(sys, "devices/pci0000:00/0000:00:04.0/virtio1/driver"))
	link("../../../../module/virtio_blk", filepath.Join(sys, "bus/virtio/drivers/virtio_blk/module"))
	write(filepath.Join(sys, "module/virtio_blk/initstate"), "live\n")
	write(filepath.Join(vda, "dev"), "253:0\n")
	link("../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda", filepath.Join(sys, "dev/block/253:0"))
	// crc32c is built in: sysfs has the module directory but no initstate.
	write(filepath.Join(sys, "module/crc32c_intel/parameters/x"), "")

	sb := make([]byte, 4096)
	binary.LittleEndian.PutUint16(sb[1024+56:], 0xEF53)
	copy(sb[1024+104:], []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})
	must(os.MkdirAll(dev, 0o755))
	must(os.WriteFile(filepath.Join(dev, "vda"), sb, 0o644))

	mods := filepath.Join(root, "modules")
	write(filepath.Join(mods, "kernel/virtio_blk.ko"), "x")
	write(filepath.Join(mods, "kernel/nvme.ko"), "x")
	write(filepath.Join(mods, "modules.dep"), "kernel/virtio_blk.ko:\nkernel/nvme.ko:\n")
	write(filepath.Join(mods, "modules.builtin"), "kernel/fs/ext4/ext4.ko\n")
	write(filepath.Join(root, "vmlinuz"), string(bzimagetest.Image(0x020f, 20<<20, "7.3.0-test")))
	write(filepath.Join(root, "kdumpinit"), string(tinyELF()))
	write(filepath.Join(root, "proc", "modules"), "virtio_blk 20480 0 - Live 0x0\n")
	write(filepath.Join(root, "ukdump.conf"), conf)
	return Options{
		ConfigFile: filepath.Join(root, "ukdump.conf"),
		Kernel:     filepath.Join(root, "vmlinuz"),
		ModuleDir:  mods,
		Init:       filepath.Join(root, "kdumpinit"),
		Cmdline:    "console=ttyS0 crashkernel=256M",
		Sys:        blockdev.Sys{SysDir: sys, DevDir: dev},
		StateFile:  filepath.Join(root, "state.json"),
		ProcDir:    filepath.Join(root, "proc"),
	}
}

// tinyELF is an ELF executable header without an interpreter: enough for
// mkinitrd to take it as a static kdumpinit.
func tinyELF() []byte {
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, &h)
	return b.Bytes()
}

// kexecSysfs writes the crash kernel files of sysfs.
func kexecSysfs(t *testing.T, o Options, loaded bool, reserved uint64) {
	t.Helper()
	dir := filepath.Join(o.Sys.SysDir, "kernel")
	l := "0\n"
	if loaded {
		l = "1\n"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"kexec_crash_loaded": l, "kexec_crash_size": strconv.FormatUint(reserved, 10) + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadNeedsReservation: without kexec support or without a
// reservation, Load stops before it looks for keys or calls the kernel,
// and says what to do, with the figure.
func TestLoadNeedsReservation(t *testing.T) {
	o := fakeSystem(t, "ext4 UUID="+uuid+"\n")
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, io.Discard); err == nil || !strings.Contains(err.Error(), "this kernel cannot load a crash kernel") {
		t.Errorf("Load without kexec in sysfs: %v", err)
	}
	kexecSysfs(t, o, false, 0)
	_, err = Load(p, io.Discard)
	for _, want := range []string{"no memory reserved for a crash kernel (crashkernel= is missing from the kernel command line)",
		"add crashkernel=80M", "/etc/default/grub, run update-grub, and reboot"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load without a reservation: %v; want %q", err, want)
		}
	}
}

// TestEstimate: the plan's estimate reads init_size from the image and
// counts the initramfs that Load would build.
func TestEstimate(t *testing.T) {
	p, err := Prepare(fakeSystem(t, "ext4 UUID="+uuid+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := p.Estimate(128 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if e.Terms[0].Bytes != 20<<20 || e.Terms[1].Bytes == 0 || e.Terms[2].Bytes <= e.Terms[1].Bytes || !e.Enough() || e.Cmdline() != "crashkernel=80M" {
		t.Errorf("Estimate = %+v", e)
	}
	if got := kernelRelease(p.Options.Kernel); got != "7.3.0-test" {
		t.Errorf("kernelRelease = %q", got)
	}
	if got := kernelRelease("/boot/vmlinuz-6.1.0-57-cloud-amd64"); got != "6.1.0-57-cloud-amd64" {
		t.Errorf("kernelRelease by name = %q", got)
	}
}

func TestPrepare(t *testing.T) {
	o := fakeSystem(t, "ext4 LABEL=\npath /crash\nextra_modules nvme crc32c_intel\n")
	if _, err := Prepare(o); err == nil {
		t.Fatal("empty label accepted")
	}
	o = fakeSystem(t, "ext4 UUID="+strings.ToUpper(uuid)+"\npath /crash\nextra_modules nvme crc32c_intel\ntarget_timeout 7\n")
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Build.Config
	if c.Target.UUID != uuid || c.Path != "/crash" || c.Target.FSType != "ext4" || c.Hostname == "" {
		t.Errorf("init config = %+v", c)
	}
	// ext4 is built in (modules.builtin), crc32c_intel too (sysfs).
	if got := strings.Join(p.Build.Modules, " "); got != "virtio_blk nvme" {
		t.Errorf("modules = %q, want virtio_blk nvme", got)
	}
	if p.Target.Device.Name != "vda" {
		t.Errorf("target device = %+v", p.Target)
	}
}

func TestPrepareErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf string
		edit func(*Options)
		want string
	}{
		{"missing config", "", func(o *Options) { o.ConfigFile += ".missing" }, "no such file"},
		{"bad line", "ext4 UUID=" + uuid + "\nbogus 1\n", nil, "line 2: bogus: unknown directive"},
		{"missing kernel", "ext4 UUID=" + uuid + "\n", func(o *Options) { o.Kernel = "/nonexistent/vmlinuz" }, "crash kernel: stat /nonexistent/vmlinuz"},
		{"target absent", "ext4 UUID=00000000-0000-0000-0000-000000000000\n", nil, "dump target: blockdev: UUID=00000000-0000-0000-0000-000000000000: no such device"},
		{"wrong fs", "xfs UUID=" + uuid + "\n", nil, "holds ext4, not xfs"},
		{"missing module dir", "ext4 UUID=" + uuid + "\n", func(o *Options) { o.ModuleDir = "/nonexistent/modules" }, "/nonexistent/modules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fakeSystem(t, tc.conf)
			if tc.edit != nil {
				tc.edit(&o)
			}
			if _, err := Prepare(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Prepare error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestPrepareNoModules: a kernel without module support has no module
// tree, and needs no modules.
func TestPrepareNoModules(t *testing.T) {
	o := fakeSystem(t, "ext4 UUID="+uuid+"\n")
	o.ProcDir = t.TempDir()
	o.ModuleDir = "/nonexistent/modules"
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if p.Build.Tree != nil || len(p.Build.Modules) != 0 {
		t.Errorf("modules without a tree: %v", p.Build.Modules)
	}
}

func TestState(t *testing.T) {
	name := filepath.Join(t.TempDir(), "run", "state.json")
	if st, err := ReadState(name); st != nil || err != nil {
		t.Errorf("no state file: %v, %v", st, err)
	}
	in := &State{Kernel: "/boot/vmlinuz", Target: "ext4 UUID=x", InitramfsSize: 1234}
	if err := writeState(name, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadState(name)
	if err != nil || out.Kernel != in.Kernel || out.InitramfsSize != 1234 {
		t.Errorf("ReadState = %+v, %v", out, err)
	}
	if err := RemoveState(name); err != nil {
		t.Fatal(err)
	}
	if err := RemoveState(name); err != nil {
		t.Errorf("removing a missing state file: %v", err)
	}
}

func TestCryptoModules(t *testing.T) {
	for cipher, want := range map[string]string{
		"aes-xts-plain64":      "aes_generic aesni_intel xts ecb",
		"aes-cbc-essiv:sha256": "aes_generic aesni_intel cbc essiv sha256 sha256_generic",
		"serpent-cbc-plain":    "serpent_generic cbc",
	} {
		if got := strings.Join(cryptoModules(cipher), " "); got != want {
			t.Errorf("cryptoModules(%s) = %s, want %s", cipher, got, want)
		}
	}
}

// TestPrepareWatchdog: the driver of a hardware watchdog goes into the
// crash initramfs, so the crash kernel can feed it.
func TestPrepareWatchdog(t *testing.T) {
	o := fakeSystem(t, "ext4 UUID="+uuid+"\n")
	sys := o.Sys.SysDir
	wd := filepath.Join(sys, "devices/pci0000:00/0000:00:05.0/watchdog/watchdog0")
	for _, d := range []string{wd, filepath.Join(sys, "class/watchdog"), filepath.Join(sys, "bus/pci/drivers/i6300esb"), filepath.Join(sys, "module/i6300esb")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for target, link := range map[string]string{
		"../../devices/pci0000:00/0000:00:05.0/watchdog/watchdog0": filepath.Join(sys, "class/watchdog/watchdog0"),
		"../..":                             filepath.Join(wd, "device"),
		"../../../bus/pci/drivers/i6300esb": filepath.Join(sys, "devices/pci0000:00/0000:00:05.0/driver"),
		"../../../../module/i6300esb":       filepath.Join(sys, "bus/pci/drivers/i6300esb/module"),
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	dep := filepath.Join(o.ModuleDir, "modules.dep")
	if err := os.WriteFile(filepath.Join(o.ModuleDir, "kernel/i6300esb.ko"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dep, []byte("kernel/virtio_blk.ko:\nkernel/i6300esb.ko:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Build.Modules, " "); got != "virtio_blk i6300esb" {
		t.Errorf("modules = %q, want virtio_blk i6300esb", got)
	}
}

// TestStateFileSymlink: the state file is replaced, never written through
// a symlink planted in its place.
func TestStateFileSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "state.json")
	if err := os.Symlink(victim, name); err != nil {
		t.Fatal(err)
	}
	if err := writeState(name, &State{Kernel: "k"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("state written through the symlink: victim now %q", b)
	}
	if st, err := ReadState(name); err != nil || st.Kernel != "k" {
		t.Errorf("ReadState = %+v, %v", st, err)
	}
}
