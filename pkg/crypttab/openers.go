package crypttab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/mounts"
)

// Version is a program's version; the zero Version is unknown.
type Version struct {
	Major, Minor, Patch int
}

// Known reports whether the version could be read.
func (v Version) Known() bool { return v != Version{} }

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

func (v Version) String() string {
	if !v.Known() {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// parseVersion reads the first "N[.N[.N]]" word after the program's name
// on the first line: "systemd 257 (257.9-1~deb13u1)",
// "cryptsetup 2.7.5 flags: UDEV BLKID KEYRING ...".
func parseVersion(out []byte, program string) Version {
	first, _, _ := strings.Cut(string(out), "\n")
	f := strings.Fields(first)
	if len(f) < 2 || f[0] != program {
		return Version{}
	}
	var n [3]int
	for i, p := range strings.SplitN(f[1], ".", 3) {
		p, _, _ = strings.Cut(p, "-") // 2.8.0-rc1, 257~rc2
		p, _, _ = strings.Cut(p, "~")
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return Version{}
		}
		n[i] = v
	}
	return Version{n[0], n[1], n[2]}
}

// The first versions that honour link-volume-key=: systemd-cryptsetup
// added the option in 256, on libcryptsetup's keyring linking of 2.7.
const (
	SystemdLinkVolumeKey         = 256
	CryptsetupLinkVolumeKeyMajor = 2
	CryptsetupLinkVolumeKeyMinor = 7
)

// Openers are the programs that open the volumes of crypttab at boot on
// this system, as far as can be told from outside them.
type Openers struct {
	// Systemd is systemd's version (only Major counts); Cryptsetup is
	// cryptsetup's, whose library systemd-cryptsetup uses.
	Systemd, Cryptsetup Version
	// Cryptroot is set when initramfs-tools' cryptroot (Debian's
	// cryptsetup-initramfs) is installed: it opens the volumes the
	// initramfs needs (those of / and /usr, and lines with the option
	// initramfs), reading crypttab at update-initramfs time.
	Cryptroot bool
}

// Runner runs a program with arguments and returns its standard output.
type Runner func(name string, args ...string) ([]byte, error)

// CryptrootScript is the script of cryptroot in the initramfs-tools tree.
const CryptrootScript = "usr/share/initramfs-tools/scripts/local-top/cryptroot"

// Detect finds the openers of the system under root ("/" for this one):
// versions from "systemctl --version" and "cryptsetup --version", which
// may be missing (then unknown), and cryptroot from its script.
func Detect(root string, run Runner) Openers {
	var o Openers
	if out, err := run("systemctl", "--version"); err == nil {
		o.Systemd = parseVersion(out, "systemd")
	}
	if out, err := run("cryptsetup", "--version"); err == nil {
		o.Cryptsetup = parseVersion(out, "cryptsetup")
	}
	_, err := os.Stat(filepath.Join(root, CryptrootScript))
	o.Cryptroot = err == nil
	return o
}

// LinkVolumeKey tells whether systemd-cryptsetup here links a volume key
// as link-volume-key= asks, and whether that is known for sure. systemd
// 256 or later is taken to honour it when cryptsetup's own version is
// unknown: systemd-cryptsetup needs only the library, not the cryptsetup
// program, and distributions build systemd 256 with libcryptsetup 2.7.
func (o Openers) LinkVolumeKey() (ok, known bool) {
	sd, cs := o.Systemd, o.Cryptsetup
	switch {
	case sd.Known() && sd.Major < SystemdLinkVolumeKey,
		cs.Known() && !cs.AtLeast(CryptsetupLinkVolumeKeyMajor, CryptsetupLinkVolumeKeyMinor):
		return false, true
	case !sd.Known():
		return false, false
	}
	return true, cs.Known()
}

// Requirement says what link-volume-key= needs, and what this system has.
func (o Openers) Requirement() string {
	return fmt.Sprintf("link-volume-key= needs systemd %d or later with cryptsetup %d.%d or later; this system has systemd %s, cryptsetup %s",
		SystemdLinkVolumeKey, CryptsetupLinkVolumeKeyMajor, CryptsetupLinkVolumeKeyMinor, o.systemd(), o.Cryptsetup)
}

func (o Openers) systemd() string {
	if !o.Systemd.Known() {
		return "unknown"
	}
	return strconv.Itoa(o.Systemd.Major)
}

// InInitramfs reports whether cryptroot opens the volume mapped as the
// block device mapped (dm-0), whose crypttab line is e (nil: none), given
// the devices under / and /usr (InitramfsDevices).
func (o Openers) InInitramfs(mapped string, e *Entry, initramfs map[string]bool) bool {
	if !o.Cryptroot {
		return false
	}
	if e != nil {
		if _, ok := e.Option("initramfs"); ok {
			return true
		}
	}
	return initramfs[mapped]
}

// InitramfsDevices are the block devices under / and /usr, by kernel name:
// those an initramfs opens before it hands over to the system.
func InitramfsDevices(sys blockdev.Sys, procDir string) (map[string]bool, error) {
	tab, err := mounts.Read(procDir)
	if err != nil {
		return nil, fmt.Errorf("crypttab: %w", err)
	}
	out := map[string]bool{}
	for _, dir := range []string{"/", "/usr"} {
		m, ok := tab.Holding(dir)
		if !ok {
			continue
		}
		dev, err := sys.ByNumber(m.Major, m.Minor)
		if err != nil && strings.HasPrefix(m.Source, "/dev/") {
			// btrfs: device numbers are per subvolume.
			dev, _, err = sys.Resolve(m.Source)
		}
		if err != nil {
			continue // tmpfs, overlay: no block device under it
		}
		stack, err := sys.Stack(dev.Name)
		if err != nil {
			return nil, fmt.Errorf("crypttab: devices under %s: %w", dir, err)
		}
		for _, n := range stack {
			out[n] = true
		}
	}
	return out, nil
}
