// Package config holds ukdump's two configurations: the administrator's
// /etc/ukdump.conf (kdump.conf-style directives, read in the first kernel)
// and Init, the typed configuration that the generator packs into the crash
// initramfs and kdumpinit reads. Sharing one Go type between the generator
// and the init means the two can never disagree about a field's meaning.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ukdump/ukdump/internal/words"
	"github.com/ukdump/ukdump/pkg/diskdump"
)

// Action is what the crash kernel does when it has finished or failed.
type Action string

// The actions a crash kernel can take at the end.
const (
	Reboot   Action = "reboot"
	Poweroff Action = "poweroff"
	Halt     Action = "halt"
)

// Actions lists the actions, the default first.
func Actions() []Action { return []Action{Reboot, Poweroff, Halt} }

// ParseAction accepts the action names of kdump.conf. kdump-utils' shell
// and dump_to_rootfs are refused with the reason.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions() {
		if string(a) == s {
			return a, nil
		}
	}
	why := ""
	switch s {
	case "shell":
		why = ": the crash kernel has no shell"
	case "dump_to_rootfs":
		why = ": ukdump writes only to the dump target"
	}
	return "", fmt.Errorf("unknown action %q%s (want %s)", s, why, words.Or(Actions()))
}

// Defaults for settings the administrator leaves out.
const (
	DefaultPath          = "/var/crash"
	DefaultTargetTimeout = 60 * time.Second
	DefaultConfigFile    = "/etc/ukdump.conf"
	// MaxTargetTimeout bounds target_timeout (seconds): a disk that takes
	// an hour to appear will not appear, and the crash kernel's watchdog
	// adds this wait to its limit, where a huge value would overflow and
	// disable it.
	MaxTargetTimeout = 3600
	// MaxCrashCPUs bounds crash_cpus: each CPU costs the crash kernel
	// memory, and compression stops scaling long before this.
	MaxCrashCPUs = 64
)

// Target is the filesystem that receives the dump.
type Target struct {
	// FSType is the filesystem type; see KnownFS.
	FSType string `json:"fstype"`
	// Spec is the device as the administrator wrote it: UUID=…, LABEL=… or a path.
	Spec string `json:"spec"`
	// UUID is the filesystem UUID, resolved in the first kernel, because device
	// names are not stable across a kexec but UUIDs are.
	UUID string `json:"uuid,omitempty"`
	// Options are mount options.
	Options string `json:"options,omitempty"`
}

// Init is the configuration of kdumpinit, written by the generator.
type Init struct {
	// Target is where the dump goes; Target.UUID must be set.
	Target Target `json:"target"`
	// Path is the directory on the target that holds dump directories.
	Path string `json:"path"`
	// Hostname names the dump directory; it is the first kernel's hostname.
	Hostname string `json:"hostname"`
	// Modules are the module files inside the initramfs, in load order.
	Modules []string `json:"modules"`
	// TargetTimeout bounds the wait for the target device.
	TargetTimeout Duration `json:"target_timeout"`
	// FailureAction is taken when the dump could not be written.
	FailureAction Action `json:"failure_action"`
	// FinalAction is taken after a successful dump.
	FinalAction Action `json:"final_action"`
	// Volumes are the LUKS devices under the target, lowest first: each is
	// unlocked before the ones above it and the target.
	Volumes []Volume `json:"volumes,omitempty"`
	// LVM are the LVM logical volumes under the target, lowest first:
	// each is activated after the LUKS volumes (which may hold its PVs)
	// and before the target is mounted.
	LVM []LVM `json:"lvm,omitempty"`
	// Dump says how the dump is filtered and written.
	Dump Dump `json:"dump"`
}

// Dump is the core collector's configuration.
type Dump struct {
	// Level is makedumpfile's dump level: the sum of 1 (zero pages),
	// 2 (cache without private), 4 (all cache), 8 (user), 16 (free) that
	// are left out.
	Level int `json:"level"`
	// Compression is the per-page compression of the kdump format.
	Compression diskdump.Compression `json:"compression"`
	// Format is the file format of the dump.
	Format diskdump.Format `json:"format"`
	// KeepKeys leaves the LUKS volume keys, and what the kernel derives
	// from them, in the dump ("scrub_keys no"). By default kdumpinit
	// overwrites them in every page it writes; the field says "keep"
	// rather than "scrub" so that its zero value, also that of an Init
	// from an older generator, scrubs.
	KeepKeys bool `json:"keep_keys,omitempty"`
}

// Defaults of the core collector. Snappy is the default compression: on
// one CPU it compresses real pages faster than a crash kernel reads memory
// (1.3 GB/s, ratio 0.67, against about 0.3 GB/s for zstd and zlib; see
// README.md), while filtering does most of the shrinking. lzo is there for
// makedumpfile builds without snappy, zstd for small dumps over slow disks.
const (
	DefaultDumpLevel   = 31
	DefaultCompression = diskdump.Snappy
	DefaultFormat      = diskdump.KdumpFormat
	// MaxDumpLevel leaves out every kind of page that can be left out.
	MaxDumpLevel = 31
)

// ParseLevel reads a dump level.
func ParseLevel(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > MaxDumpLevel {
		return 0, fmt.Errorf("%q is not a dump level from 0 to %d", s, MaxDumpLevel)
	}
	return n, nil
}

// Validate reports a dump setting kdumpinit cannot honour.
func (d Dump) Validate() error {
	if d.Level < 0 || d.Level > MaxDumpLevel {
		return fmt.Errorf("config: dump_level %d is not between 0 and %d", d.Level, MaxDumpLevel)
	}
	if _, err := diskdump.ParseFormat(string(d.Format)); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if _, err := diskdump.ParseCompression(d.Compression.String()); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Transport is how a volume key travels from the first to the crash kernel.
type Transport string

// The transports. Auto picks Kernel when the running kernel has
// CONFIG_CRASH_DM_CRYPT, else Initrd.
const (
	// Kernel: the kernel copies logon keys into crash-reserved memory
	// (crash_dm_crypt_keys, Linux 6.16+) and restores them as user keys.
	Kernel Transport = "kernel"
	// Initrd: the key rides in the initramfs that ukdump builds in memory
	// and loads with kexec_file_load; it never reaches a file.
	Initrd Transport = "initrd"
	Auto   Transport = "auto"
)

// Transports lists the transports key_transport takes, the default first.
func Transports() []Transport { return []Transport{Auto, Kernel, Initrd} }

// ParseTransport accepts the names of Transports.
func ParseTransport(s string) (Transport, error) {
	for _, t := range Transports() {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown transport %q (want %s)", s, words.Or(Transports()))
}

// Volume is a LUKS device the crash kernel must unlock.
type Volume struct {
	// UUID is the LUKS header's UUID.
	UUID string `json:"uuid"`
	// Name is the mapping name, the same as in the first kernel.
	Name string `json:"name"`
	// Transport is Kernel or Initrd.
	Transport Transport `json:"transport"`
	// KeyDesc is the user key description that restore creates (Kernel).
	KeyDesc string `json:"key_desc,omitempty"`
	// KeyFile is the key's path inside the initramfs (Initrd).
	KeyFile string `json:"key_file,omitempty"`
	// Header is the LUKS header's fingerprint at load time
	// (luks.Header.Fingerprint): the crash kernel refuses a header that
	// changed since, before computing anything with it.
	Header string `json:"header"`
}

// LVM is an LVM logical volume the crash kernel activates, from the
// metadata on its PVs (it has no lvm2 tools). What the first kernel saw is
// recorded so the crash kernel can tell whether the volume group changed
// since.
type LVM struct {
	// VG and LV are the names; VGID and LVID the ids, in lvm2's written
	// form (6-4-4-4-4-4-6 characters with dashes).
	VG   string `json:"vg"`
	VGID string `json:"vg_id"`
	LV   string `json:"lv"`
	LVID string `json:"lv_id"`
	// PVs are the ids of the PVs the LV lies on: the crash kernel waits
	// for each of them.
	PVs []string `json:"pvs"`
	// Seqno is the VG metadata's sequence number at load time.
	Seqno uint64 `json:"seqno"`
	// Table is the LV's device-mapper table at load time, with PVs named
	// by id. The crash kernel maps the table of the metadata it finds,
	// and only if that table agrees with this one wherever both map.
	Table []LVMTarget `json:"table"`
}

// LVMTarget is one line of an LV's table. Sizes are in 512-byte sectors.
type LVMTarget struct {
	Start  uint64 `json:"start"`
	Length uint64 `json:"length"`
	// ChunkSize is the stripe size of a striped line, 0 for linear.
	ChunkSize uint64 `json:"chunk_size,omitempty"`
	// Areas has one entry for linear, one per stripe for striped.
	Areas []LVMArea `json:"areas"`
}

// LVMArea is where (part of) a line's data lies: a PV by id and an
// offset on it.
type LVMArea struct {
	PV     string `json:"pv"`
	Offset uint64 `json:"offset"`
}

// Validate reports what kdumpinit could not activate.
func (l LVM) Validate() error {
	who := l.VG + "/" + l.LV
	switch {
	case !lvmName(l.VG) || !lvmName(l.LV):
		return fmt.Errorf("config: LVM %q: not a VG/LV name lvm2 accepts", who)
	case !lvmID(l.VGID) || !lvmID(l.LVID):
		return fmt.Errorf("config: LVM %s: VG id %q or LV id %q is not an lvm2 id", who, l.VGID, l.LVID)
	case len(l.PVs) == 0 || len(l.Table) == 0:
		return fmt.Errorf("config: LVM %s: needs its PVs and its table", who)
	}
	for _, pv := range l.PVs {
		if !lvmID(pv) {
			return fmt.Errorf("config: LVM %s: PV id %q is not an lvm2 id", who, pv)
		}
	}
	next := uint64(0)
	for i, t := range l.Table {
		switch {
		case t.Start != next || t.Length == 0:
			return fmt.Errorf("config: LVM %s: table line %d covers %d+%d, want a line from %d on", who, i+1, t.Start, t.Length, next)
		case len(t.Areas) == 0 || len(t.Areas) > 1 && t.ChunkSize == 0 || len(t.Areas) == 1 && t.ChunkSize != 0:
			return fmt.Errorf("config: LVM %s: table line %d: %d areas with chunk size %d", who, i+1, len(t.Areas), t.ChunkSize)
		}
		for _, a := range t.Areas {
			if !slices.Contains(l.PVs, a.PV) {
				return fmt.Errorf("config: LVM %s: table line %d uses PV %s, which is not among its PVs", who, i+1, a.PV)
			}
		}
		next += t.Length
	}
	return nil
}

// lvmName is lvm2's rule for VG and LV names: letters, digits, "+_.-",
// no leading '-', not "." or "..", under 128 characters.
func lvmName(s string) bool {
	if s == "" || len(s) > 127 || s[0] == '-' || s == "." || s == ".." {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+_.-") == ""
}

// lvmID checks an lvm2 id in its written form: 32 characters of lvm2's
// id alphabet in groups of 6-4-4-4-4-4-6, joined by dashes.
func lvmID(s string) bool {
	groups := strings.Split(s, "-")
	if len(groups) != 7 {
		return false
	}
	for i, g := range groups {
		want := 4
		if i == 0 || i == 6 {
			want = 6
		}
		if len(g) != want || strings.Trim(g, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#") != "" {
			return false
		}
	}
	return true
}

// InitPath is where the generator puts Init inside the initramfs.
const InitPath = "etc/ukdump/init.json"

// Validate reports the first problem that would stop kdumpinit.
func (c *Init) Validate() error {
	switch {
	case c.Target.UUID == "":
		return errors.New("config: target has no UUID")
	case !KnownFS(c.Target.FSType):
		return fmt.Errorf("config: unsupported filesystem %q", c.Target.FSType)
	case !path.IsAbs(c.Path):
		return fmt.Errorf("config: path %q is not absolute", c.Path)
	case c.TargetTimeout <= 0 || c.TargetTimeout > Duration(MaxTargetTimeout*time.Second):
		return fmt.Errorf("config: target_timeout %s is not from 1 s to %d s", time.Duration(c.TargetTimeout), MaxTargetTimeout)
	}
	if err := c.Dump.Validate(); err != nil {
		return err
	}
	for _, v := range c.Volumes {
		switch {
		case v.UUID == "" || v.Name == "" || v.Header == "":
			return fmt.Errorf("config: volume %+v needs a UUID, a name and a header fingerprint", v)
		case v.Transport == Kernel && v.KeyDesc == "":
			return fmt.Errorf("config: volume %s: kernel transport without a key description", v.UUID)
		case v.Transport == Initrd && !path.IsAbs(v.KeyFile):
			return fmt.Errorf("config: volume %s: initrd transport without a key file", v.UUID)
		case v.Transport != Kernel && v.Transport != Initrd:
			return fmt.Errorf("config: volume %s: unknown transport %q", v.UUID, v.Transport)
		}
	}
	for _, l := range c.LVM {
		if err := l.Validate(); err != nil {
			return err
		}
	}
	for _, a := range []Action{c.FailureAction, c.FinalAction} {
		if _, err := ParseAction(string(a)); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	return nil
}

// Marshal encodes c for the initramfs.
func (c *Init) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(c, "", "  ")
}

// ReadInit reads and validates the Init written by the generator.
func ReadInit(file string) (*Init, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Init
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config: %s: %w", file, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, file)
	}
	return &c, nil
}

// Duration is a time.Duration that encodes as seconds in JSON, so the file
// stays readable by people.
type Duration time.Duration

// MarshalJSON encodes d as a number of seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Seconds())
}

// UnmarshalJSON decodes a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Duration(s * float64(time.Second))
	return nil
}

// FSTypes are the filesystems that can hold dumps. Each is also the name of
// the kernel module that provides it.
func FSTypes() []string { return []string{"ext4", "ext3", "ext2", "xfs", "btrfs"} }

// KnownFS reports whether fs is one of FSTypes.
func KnownFS(fs string) bool { return slices.Contains(FSTypes(), fs) }

func validSpec(spec string) bool {
	for _, k := range []string{"UUID=", "LABEL="} {
		if strings.HasPrefix(spec, k) && len(spec) > len(k) {
			return true
		}
	}
	return strings.HasPrefix(spec, "/dev/")
}
