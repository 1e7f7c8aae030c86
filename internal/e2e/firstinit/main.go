// Command firstinit is test-only code: PID 1 of the first kernel in the
// end-to-end tests. It plays the part of a booted system with ukdump
// installed: it mounts the dump disk, leaves a marker in the kernel log,
// checks that ukdump refuses bad input, runs the real "ukdump load" and
// crashes the kernel with sysrq.
//
// Kernel command line parameters (read from /proc/cmdline):
//
//	ukdump.marker=TEXT       written to the kernel log before the crash
//	ukdump.scenario=NAME     "dump" (default); "vanish": after loading,
//	                         wipe the target's superblock magic so the
//	                         crash kernel never finds its UUID; "badsb":
//	                         after loading, set an ext4 feature flag no
//	                         kernel knows, so the target is found but
//	                         does not mount; "nokeys": after loading,
//	                         reload the crash kernel without the volume
//	                         keys; "bench": fill memory, load the
//	                         benchmark's crash kernel (/bench/crash.img,
//	                         ukdump.crashcpus=N CPUs) and crash
//	ukdump.plant=1           before the crash, make the dump directories
//	                         the crash could be named after (this second
//	                         and the next few), each holding a file, so
//	                         the crash kernel must choose another name
//	ukdump.fill=1            fill memory before the crash (benchmark vmcore;
//	                         ukdump.anon=MiB of anonymous memory)
//	ukdump.wrongkey=1        first check that a wrong logon key is refused
//	ukdump.reuse=1           after loading, drop the logon keys and reload
//	                         with "ukdump load --reuse-keys"
//	ukdump.concurrent=1      then run two "ukdump reload" at once and check
//	                         what they leave (a loaded crash kernel, a
//	                         state file and key items that match)
//
// LUKS volumes listed in /etc/e2e/volumes are opened first (see volume).
//
// Every line that the test reads starts with "FIRSTINIT ".
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dumpdir"
	"github.com/ukdump/ukdump/pkg/insmod"
	"github.com/ukdump/ukdump/pkg/kmod"
)

func main() {
	if err := run(); err != nil {
		fmt.Printf("FIRSTINIT FAILED: %v\n", err)
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	select {}
}

func say(format string, args ...any) {
	fmt.Printf("FIRSTINIT "+format+"\n", args...)
}

func run() error {
	for _, m := range []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}, {"tmpfs", "/run", "tmpfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	params := cmdlineParams()
	if err := loadModules(); err != nil {
		return err
	}
	if err := waitFor("/dev/vda", 30*time.Second); err != nil {
		return err
	}
	vols, err := readVolumes()
	if err != nil {
		return err
	}
	if err := openVolumes(vols); err != nil {
		return err
	}
	target, err := mountTarget()
	if err != nil {
		return err
	}
	if params["ukdump.scenario"] == "bench" {
		return benchCrash(params)
	}

	badInputChecks()
	if params["ukdump.wrongkey"] == "1" {
		wrongKeyCheck(vols)
	}
	if len(vols) > 0 {
		noKeyInImage(vols)
	}

	iomem, err := os.ReadFile("/proc/iomem")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(iomem), "\n") {
		if strings.HasSuffix(l, " : System RAM") || strings.HasSuffix(l, " : Crash kernel") {
			say("IOMEM %s", strings.TrimSpace(l))
		}
	}

	out, err := exec.Command("/usr/bin/ukdump", "load").CombinedOutput()
	fmt.Printf("%s", out)
	if err != nil {
		return fmt.Errorf("ukdump load: %w", err)
	}
	loaded, _ := os.ReadFile("/sys/kernel/kexec_crash_loaded")
	say("kexec_crash_loaded=%s", strings.TrimSpace(string(loaded)))
	if strings.TrimSpace(string(loaded)) != "1" {
		return fmt.Errorf("crash kernel not loaded after ukdump load")
	}
	if params["ukdump.unload"] == "1" {
		if err := unloadReload(); err != nil {
			return err
		}
	}
	out, _ = exec.Command("/usr/bin/ukdump", "status").CombinedOutput()
	fmt.Printf("%s", out)

	var anon [][]byte
	if params["ukdump.fill"] == "1" {
		if anon, err = fill(params); err != nil {
			return err
		}
	}
	// The anonymous memory must still be in use when the kernel dies.
	defer runtime.KeepAlive(anon)
	if params["ukdump.reuse"] == "1" {
		if err := reloadReusingKeys(vols); err != nil {
			return err
		}
	}
	if params["ukdump.concurrent"] == "1" {
		concurrentReloads(vols)
	}
	switch params["ukdump.scenario"] {
	case "vanish":
		if err := wipeSuperblock(target); err != nil {
			return err
		}
	case "badsb":
		if err := unknownFeature(target); err != nil {
			return err
		}
	case "nokeys":
		if err := reloadWithoutKeys(kernelPath()); err != nil {
			return err
		}
	}
	if params["ukdump.plant"] == "1" {
		if err := plant(); err != nil {
			return err
		}
	}
	marker := params["ukdump.marker"]
	if err := os.WriteFile("/dev/kmsg", []byte("<5>UKDUMP-MARKER "+marker+"\n"), 0); err != nil {
		return fmt.Errorf("kmsg: %w", err)
	}
	unix.Sync()
	say("crashing")
	return os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0)
}

// unloadReload checks "ukdump unload" and loads again.
func unloadReload() error {
	out, err := exec.Command("/usr/bin/ukdump", "unload").CombinedOutput()
	loaded, _ := os.ReadFile("/sys/kernel/kexec_crash_loaded")
	check("unload", err == nil && strings.TrimSpace(string(loaded)) == "0", out)
	out, err = exec.Command("/usr/bin/ukdump", "load").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ukdump load after unload: %w: %s", err, out)
	}
	loaded, _ = os.ReadFile("/sys/kernel/kexec_crash_loaded")
	check("reload", strings.TrimSpace(string(loaded)) == "1", nil)
	return nil
}

// badInputChecks runs ukdump with inputs it must refuse and reports each
// result; the host test asserts on the lines.
func badInputChecks() {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing-config", []string{"load", "--config", "/etc/nonexistent.conf"}, "no such file"},
		{"missing-kernel", []string{"load", "--kernel", "/boot/nonexistent"}, "crash kernel"},
	} {
		out, err := exec.Command("/usr/bin/ukdump", c.args...).CombinedOutput()
		ee, isExit := err.(*exec.ExitError)
		ok := isExit && ee.ExitCode() == 1 && bytes.Contains(out, []byte(c.want))
		check(c.name, ok, out)
	}
}

func check(name string, ok bool, out []byte) {
	result := "FAIL"
	if ok {
		result = "PASS"
	}
	say("CHECK %s %s: %s", name, result, strings.TrimSpace(string(out)))
}

func cmdlineParams() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	m := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

// loadModules loads every module the harness packed; a kernel with all
// drivers built in has none.
func loadModules() error {
	var uts unix.Utsname
	unix.Uname(&uts)
	dir := "/lib/modules/" + unix.ByteSliceToString(uts.Release[:])
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil
	}
	tree, err := kmod.Open(dir)
	if err != nil {
		return err
	}
	mods, err := tree.Resolve(tree.Names()...)
	if err != nil {
		return err
	}
	for _, m := range mods {
		image, err := kmod.Decompress(m.Path)
		if err != nil {
			return err
		}
		if err := insmod.Image(m.Name, image, ""); err != nil {
			return err
		}
	}
	return nil
}

func waitFor(path string, limit time.Duration) error {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s did not appear within %s", path, limit)
}

// mountTarget mounts the dump target named in ukdump.conf, as the booted
// system would have, and returns its device.
func mountTarget() (string, error) {
	conf, err := config.ReadFile("/etc/ukdump.conf")
	if err != nil {
		return "", err
	}
	dev, _, err := blockdev.Host().Resolve(conf.Target.Spec)
	if err != nil {
		return "", err
	}
	os.MkdirAll("/mnt", 0o755)
	err = unix.Mount(dev.Path, "/mnt", conf.Target.FSType, 0, "")
	if err == unix.EROFS || err == unix.EACCES {
		// A write-protected disk (the read-only target case): the
		// booted system would have it mounted read-only.
		err = unix.Mount(dev.Path, "/mnt", conf.Target.FSType, unix.MS_RDONLY, "")
	}
	if err != nil {
		return "", fmt.Errorf("mount %s: %w", dev.Path, err)
	}
	say("mounted %s", dev.Path)
	return dev.Path, nil
}

// wipeSuperblock makes the target's UUID vanish, as if the disk had failed
// between load and crash.
func wipeSuperblock(dev string) error {
	return patchSuperblock(dev, 56, 2, func(b []byte) { b[0], b[1] = 0, 0 }, "wiped the target superblock magic")
}

// unknownFeature sets an incompatible feature flag that no kernel knows in
// the ext4 superblock (s_feature_incompat, bit 31): the UUID still matches,
// but the kernel refuses to mount it, as with a filesystem made by a newer
// mkfs or a damaged superblock.
func unknownFeature(dev string) error {
	return patchSuperblock(dev, 0x60, 4, func(b []byte) { b[3] |= 0x80 }, "set an unknown incompat feature in the target superblock")
}

// patchSuperblock unmounts the target and changes n bytes at off in its
// ext4 superblock (at 1024 on the device) with patch, then says done.
func patchSuperblock(dev string, off int64, n int, patch func([]byte), done string) error {
	if err := unix.Unmount("/mnt", 0); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 1024+off); err != nil {
		return err
	}
	patch(b)
	if _, err := f.WriteAt(b, 1024+off); err != nil {
		return err
	}
	say("%s", done)
	return f.Sync()
}

// plant makes the dump directories a crash in the next seconds would be
// named after, each holding a file "planted", and syncs them.
func plant() error {
	conf, err := config.ReadFile("/etc/ukdump.conf")
	if err != nil {
		return err
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	host := unix.ByteSliceToString(uts.Nodename[:])
	if host == "" || host == "(none)" {
		host = "localhost" // as the loader names a machine without a hostname
	}
	base := filepath.Join("/mnt", conf.Path)
	now := time.Now().UTC()
	for i := -1; i <= 5; i++ {
		dir := filepath.Join(base, dumpdir.Name(host, now.Add(time.Duration(i)*time.Second)))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "planted"), []byte(filepath.Base(dir)+"\n"), 0o600); err != nil {
			return err
		}
		say("planted %s", filepath.Base(dir))
	}
	unix.Sync()
	return nil
}
