package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/loader/loadertest"
)

const uuid = loadertest.UUID

// fakeSystem is loadertest's system as Options.
func fakeSystem(t *testing.T, conf string) Options {
	t.Helper()
	return options(loadertest.New(t, conf))
}

func options(s loadertest.System) Options {
	return Options{
		ConfigFile: s.ConfigFile,
		Kernel:     s.Kernel,
		ModuleDir:  s.ModuleDir,
		Init:       s.Init,
		Cmdline:    "console=ttyS0 crashkernel=256M",
		Sys:        s.Sys,
		StateFile:  s.StateFile,
		ProcDir:    s.ProcDir,
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
	s := loadertest.New(t, "ext4 UUID="+uuid+"\n")
	s.Kexec(t, false, 0)
	if p, err = Prepare(options(s)); err != nil {
		t.Fatal(err)
	}
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
	if got := kernelRelease(p.Options.Kernel); got != loadertest.Release {
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

// TestInitDirs: a ukdump installed under any prefix finds the kdumpinit
// that "make install" put in <prefix>/lib/ukdump.
func TestInitDirs(t *testing.T) {
	got := strings.Join(initDirs("/usr/local/sbin/ukdump"), " ")
	want := "/usr/local/sbin /usr/local/lib/ukdump /usr/lib/ukdump /usr/libexec/ukdump"
	if got != want {
		t.Errorf("initDirs = %s, want %s", got, want)
	}
	if got := strings.Join(initDirs(""), " "); got != "/usr/lib/ukdump /usr/libexec/ukdump" {
		t.Errorf("initDirs without an executable = %s", got)
	}
}

// TestMemfdSecretsLocked: the secrets archive of the in-memory initramfs
// is written into pages locked in memory, and wiped with them.
func TestMemfdSecretsLocked(t *testing.T) {
	m, err := newMemfd("ukdump-test")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	head := bytes.Repeat([]byte{1}, 5000)
	if _, err := m.Write(head); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{0xa5}, 3*4096)
	if n, err := m.WriteSecret(secret); err != nil || n != len(secret) {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOMEM) {
			t.Skipf("cannot lock memory here: %v", err)
		}
		t.Fatalf("WriteSecret = %d, %v", n, err)
	}
	if locked := lockedKiB(t, m.locked); locked < len(secret)>>10 {
		t.Errorf("the key pages: %d KiB locked, want %d", locked, len(secret)>>10)
	}
	got := make([]byte, len(head)+len(secret))
	if _, err := m.ReadAt(got, 0); err != nil || !bytes.Equal(got[:len(head)], head) || !bytes.Equal(got[len(head):], secret) {
		t.Fatalf("the file holds something else: %v", err)
	}
	if err := m.wipeSecrets(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadAt(got, 0); err != nil || !bytes.Equal(got[len(head):], make([]byte, len(secret))) || !bytes.Equal(got[:len(head)], head) {
		t.Fatalf("after wipeSecrets: %v", err)
	}
}

// lockedKiB reads the Locked: line of the mapping b in /proc/self/smaps.
func lockedKiB(t *testing.T, b []byte) int {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&b[0])))
	in := false
	for _, l := range strings.Split(string(smaps), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = strings.HasPrefix(f[0], start)
			continue
		}
		if in && strings.HasPrefix(l, "Locked:") {
			var kib int
			fmt.Sscanf(strings.TrimPrefix(l, "Locked:"), "%d", &kib)
			return kib
		}
	}
	t.Fatalf("no mapping at %s in /proc/self/smaps", start)
	return 0
}
