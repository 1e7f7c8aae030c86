package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ukdump/ukdump/internal/words"
	"github.com/ukdump/ukdump/pkg/diskdump"
)

// File is the administrator's configuration, /etc/ukdump.conf.
//
// The syntax is that of kdump.conf: one directive per line, its arguments
// separated by white space, '#' starts a comment. Directives (the table in
// directives, which a test holds to this list):
//
//	path /var/crash                      directory for dumps on the target; without a target line, a directory of this system, whose filesystem is the target
//	ext4 UUID=…|LABEL=…|/dev/…           the target filesystem, of type ext4, ext3, ext2, xfs or btrfs (default: the one holding path)
//	failure_action reboot                reboot, poweroff or halt when the dump fails ("default" is an alias)
//	final_action reboot                  reboot, poweroff or halt after the dump
//	extra_modules mod1 mod2              more kernel modules for the crash kernel
//	target_timeout 60                    seconds the crash kernel waits for the target ("disk_timeout" is an alias)
//	cmdline_append arg1 arg2             more crash kernel command line arguments
//	crash_cpus 1                         CPUs the crash kernel brings up (nr_cpus=) and compresses pages on, 1 to 64
//	key_transport auto                   how LUKS volume keys reach the crash kernel: auto, kernel or initrd
//	dump_level 31                        pages left out: 1 zero, 2 cache, 4 private cache, 8 user, 16 free
//	compression snappy                   per-page compression: snappy, lzo, zstd, zlib or none
//	format kdump                         dump file format: kdump or elf
//	scrub_keys yes                       overwrite the LUKS volume keys, their halves, salts and AES key schedules in the dump: yes or no
//	core_collector makedumpfile -l -d 31 kdump.conf's collector line: -d level, -l lzo, -c zlib, -p snappy, -z zstd, -E elf
//
// Other directives of kdump.conf are refused with the reason (see refused).
type File struct {
	Target        Target
	Path          string
	FailureAction Action
	FinalAction   Action
	ExtraModules  []string
	TargetTimeout time.Duration
	CmdlineAppend []string
	// CrashCPUs is the crash kernel's nr_cpus=.
	CrashCPUs    int
	KeyTransport Transport
	Dump         Dump
}

// ReadFile parses the configuration file at name.
func ReadFile(name string) (*File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return c, nil
}

// Parse reads a configuration. Errors about one line name it.
func Parse(r io.Reader) (*File, error) {
	c := &File{
		Path:          DefaultPath,
		FailureAction: Reboot,
		FinalAction:   Reboot,
		TargetTimeout: DefaultTargetTimeout,
		CrashCPUs:     1,
		KeyTransport:  Auto,
		Dump:          Dump{Level: DefaultDumpLevel, Compression: DefaultCompression, Format: DefaultFormat},
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		key := fields[0]
		switch {
		case key == "default":
			key = "failure_action"
		case key == "disk_timeout":
			key = "target_timeout"
		case KnownFS(key):
			key = "target"
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: %s given again (first on line %d)", n, fields[0], prev)
		}
		seen[key] = n
		if err := c.apply(key, fields); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, fields[0], err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// HasTarget reports whether the file names a target. Without one, the
// target is the filesystem that holds Path in the running system, as with
// kdump-utils; the loader finds it.
func (c *File) HasTarget() bool { return c.Target.FSType != "" }

// refused are the kdump.conf directives (of kdump-utils and of older
// kexec-tools) that ukdump does not take, with the reason, so that an
// administrator moving a kdump.conf learns why a line is refused.
func refused() map[string]string {
	const (
		network = "the crash kernel has no network: dump to a local filesystem"
		scripts = "the crash kernel runs no scripts or extra programs (it has no shell)"
		fs      = "not a filesystem ukdump dumps to (ext4, ext3, ext2, xfs or btrfs)"
	)
	return map[string]string{
		"raw":                    "raw partitions are not supported: dump to a filesystem",
		"nfs":                    network,
		"ssh":                    network,
		"sshkey":                 network,
		"fence_kdump_args":       network,
		"fence_kdump_nodes":      network,
		"link_delay":             network,
		"net":                    network,
		"virtiofs":               fs,
		"minix":                  fs,
		"kdump_pre":              scripts,
		"kdump_post":             scripts,
		"extra_bins":             scripts,
		"dracut_args":            "ukdump builds its own initramfs, without dracut",
		"force_rebuild":          "ukdump builds the initramfs in memory at every load: there is nothing to rebuild",
		"force_no_rebuild":       "ukdump builds the initramfs in memory at every load: there is nothing to rebuild",
		"auto_reset_crashkernel": "ukdump never changes the kernel command line: \"ukdump estimate\" prints the crashkernel= to set",
		"blacklist":              "the crash kernel loads only the modules the target needs, and extra_modules",
		"options":                "module options are not supported in the crash kernel",
		"debug_mem_level":        "not supported: kdumpinit's memory is a constant (see \"ukdump estimate\")",
		"override_resettable":    "not supported",
		"failure_action_wait":    "not supported",
	}
}

// directive is one kind of line in ukdump.conf.
type directive struct {
	// name is the key Parse looks the line up by: the first word, except
	// that every filesystem type is "target".
	name string
	// usage (the directive with example arguments) and doc (what it sets)
	// are the directive's line in File's comment.
	usage, doc string
	// set checks the arguments and stores them in c. word is the first
	// word as written, which for the target is the filesystem type.
	set func(c *File, word string, args []string) error
}

// directives is the grammar of ukdump.conf. It is a function, not a
// package variable, so that nothing can change it.
func directives() []directive {
	actions := words.Or(Actions())
	return []directive{
		{"path", "path /var/crash", "directory for dumps on the target; without a target line, a directory of this system, whose filesystem is the target", oneArg(setPath)},
		{"target", "ext4 UUID=…|LABEL=…|/dev/…", "the target filesystem, of type " + words.Or(FSTypes()) + " (default: the one holding path)", setTarget},
		{"failure_action", "failure_action reboot", actions + ` when the dump fails ("default" is an alias)`,
			parsedArg(ParseAction, func(c *File) *Action { return &c.FailureAction })},
		{"final_action", "final_action reboot", actions + " after the dump",
			parsedArg(ParseAction, func(c *File) *Action { return &c.FinalAction })},
		{"extra_modules", "extra_modules mod1 mod2", "more kernel modules for the crash kernel",
			someArgs("module name", func(c *File, args []string) { c.ExtraModules = args })},
		{"target_timeout", "target_timeout 60", `seconds the crash kernel waits for the target ("disk_timeout" is an alias)`, oneArg(setTimeout)},
		{"cmdline_append", "cmdline_append arg1 arg2", "more crash kernel command line arguments",
			someArgs("argument", func(c *File, args []string) { c.CmdlineAppend = args })},
		{"crash_cpus", "crash_cpus 1", fmt.Sprintf("CPUs the crash kernel brings up (nr_cpus=) and compresses pages on, 1 to %d", MaxCrashCPUs), oneArg(setCPUs)},
		{"key_transport", "key_transport auto", "how LUKS volume keys reach the crash kernel: " + words.Or(Transports()), parsedArg(ParseTransport, func(c *File) *Transport { return &c.KeyTransport })},
		{"dump_level", "dump_level 31", "pages left out: 1 zero, 2 cache, 4 private cache, 8 user, 16 free", parsedArg(ParseLevel, func(c *File) *int { return &c.Dump.Level })},
		{"compression", "compression snappy", "per-page compression: " + diskdump.CompressionNames(), parsedArg(diskdump.ParseCompression, func(c *File) *diskdump.Compression { return &c.Dump.Compression })},
		{"format", "format kdump", "dump file format: " + diskdump.FormatNames(), parsedArg(diskdump.ParseFormat, func(c *File) *diskdump.Format { return &c.Dump.Format })},
		{"scrub_keys", "scrub_keys yes", "overwrite the LUKS volume keys, their halves, salts and AES key schedules in the dump: yes or no",
			parsedArg(parseNo, func(c *File) *bool { return &c.Dump.KeepKeys })},
		{"core_collector", "core_collector makedumpfile -l -d 31", "kdump.conf's collector line: -d level, -l lzo, -c zlib, -p snappy, -z zstd, -E elf", setCollector},
	}
}

// apply sets what the line f, whose directive Parse resolved to key, says.
func (c *File) apply(key string, f []string) error {
	for _, d := range directives() {
		if d.name == key {
			return d.set(c, f[0], f[1:])
		}
	}
	if why, ok := refused()[key]; ok {
		return fmt.Errorf("not supported by ukdump: %s", why)
	}
	return errors.New("unknown directive")
}

// oneArg makes the setter of a directive that takes exactly one argument.
func oneArg(set func(c *File, arg string) error) func(*File, string, []string) error {
	return func(c *File, _ string, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("want one argument, have %d", len(args))
		}
		return set(c, args[0])
	}
}

// parsedArg makes the setter of a directive that takes one argument, which
// parse reads into the field of c that field returns.
func parsedArg[T any](parse func(string) (T, error), field func(c *File) *T) func(*File, string, []string) error {
	return oneArg(func(c *File, s string) error {
		v, err := parse(s)
		if err != nil {
			return err
		}
		*field(c) = v
		return nil
	})
}

// someArgs makes the setter of a directive that takes a list of what.
func someArgs(what string, set func(c *File, args []string)) func(*File, string, []string) error {
	return func(c *File, _ string, args []string) error {
		if len(args) == 0 {
			return fmt.Errorf("want at least one %s", what)
		}
		set(c, args)
		return nil
	}
}

// parseNo reads yes or no, and is true for no.
func parseNo(s string) (bool, error) {
	switch s {
	case "yes":
		return false, nil
	case "no":
		return true, nil
	}
	return false, fmt.Errorf("%q is not yes or no", s)
}

func setTarget(c *File, fstype string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one device (UUID=…, LABEL=… or /dev/…), have %d arguments", len(args))
	}
	if !validSpec(args[0]) {
		return fmt.Errorf("device %q is not UUID=…, LABEL=… or /dev/…", args[0])
	}
	c.Target = Target{FSType: fstype, Spec: args[0]}
	if u, ok := strings.CutPrefix(args[0], "UUID="); ok {
		c.Target.UUID = strings.ToLower(u)
	}
	return nil
}

func setPath(c *File, p string) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	c.Path = path.Clean(p)
	return nil
}

func setTimeout(c *File, s string) error {
	secs, err := strconv.Atoi(s)
	if err != nil || secs <= 0 || secs > MaxTargetTimeout {
		return fmt.Errorf("%q is not a number of seconds from 1 to %d", s, MaxTargetTimeout)
	}
	c.TargetTimeout = time.Duration(secs) * time.Second
	return nil
}

func setCPUs(c *File, s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxCrashCPUs {
		return fmt.Errorf("%q is not a number of CPUs from 1 to %d", s, MaxCrashCPUs)
	}
	c.CrashCPUs = n
	return nil
}

func setCollector(c *File, _ string, args []string) error {
	d, err := parseCollector(args, c.Dump)
	if err != nil {
		return err
	}
	c.Dump = d
	return nil
}

// parseCollector reads the makedumpfile options of a kdump.conf
// core_collector line, so that an existing kdump.conf keeps its meaning:
// -d level, -c zlib, -l lzo, -p snappy, -z zstd, -E ELF. Options that only
// tune makedumpfile's own output (--message-level, -F, --num-threads ...)
// are accepted and ignored.
func parseCollector(args []string, d Dump) (Dump, error) {
	if len(args) == 0 || args[0] != "makedumpfile" {
		return d, errors.New("only makedumpfile options are understood (ukdump collects the dump itself)")
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-d" && i+1 < len(args):
			i++
			n, err := ParseLevel(args[i])
			if err != nil {
				return d, fmt.Errorf("-d: %w", err)
			}
			d.Level = n
		case a == "-c":
			d.Compression = diskdump.Zlib
		case a == "-l":
			d.Compression = diskdump.LZO
		case a == "-p":
			d.Compression = diskdump.Snappy
		case a == "-z":
			d.Compression = diskdump.Zstd
		case a == "-E":
			d.Format = diskdump.ELFFormat
		case a == "--message-level" || a == "--num-threads":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return d, fmt.Errorf("unexpected argument %q", a)
		}
	}
	return d, nil
}
