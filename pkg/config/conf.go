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
)

// File is the administrator's configuration, /etc/ukdump.conf.
//
// The syntax is that of kdump.conf: one directive per line, its arguments
// separated by white space, '#' starts a comment. Directives (the table in
// directives, which a test holds to this list):
//
//	path /var/crash                      directory on the target for dumps
//	ext4 UUID=…|LABEL=…|/dev/…           the target filesystem (also ext2, ext3, xfs, btrfs)
//	failure_action reboot                reboot, poweroff or halt when the dump fails ("default" is an alias)
//	final_action reboot                  reboot, poweroff or halt after the dump
//	extra_modules mod1 mod2              more kernel modules for the crash kernel
//	target_timeout 60                    seconds the crash kernel waits for the target
//	cmdline_append arg1 arg2             more crash kernel command line arguments
//	key_transport auto                   how LUKS volume keys reach the crash kernel: auto, kernel or initrd
//	dump_level 31                        pages left out: 1 zero, 2 cache, 4 private cache, 8 user, 16 free
//	compression snappy                   per-page compression: snappy, lzo, zstd, zlib or none
//	format kdump                         kdump (kdump-compressed) or elf
//	core_collector makedumpfile -l -d 31 kdump.conf's collector line, read for dump level, compression and format
type File struct {
	Target        Target
	Path          string
	FailureAction Action
	FinalAction   Action
	ExtraModules  []string
	TargetTimeout time.Duration
	CmdlineAppend []string
	KeyTransport  Transport
	Dump          Dump
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
		if key == "default" {
			key = "failure_action"
		}
		if KnownFS(key) {
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
	if c.Target.FSType == "" {
		return nil, errors.New("no dump target: add a line such as \"ext4 UUID=<filesystem UUID>\"")
	}
	return c, nil
}

// unsupported are kdump.conf directives that other kdump tools accept, so
// that an administrator moving a kdump.conf learns why a line is refused.
func unsupported(key string) bool {
	switch key {
	case "raw", "nfs", "ssh", "sshkey", "virtiofs", "kdump_post", "kdump_pre",
		"extra_bins", "dracut_args", "fence_kdump_args", "fence_kdump_nodes",
		"force_rebuild", "force_no_rebuild", "auto_reset_crashkernel", "failure_action_wait":
		return true
	}
	return false
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
	return []directive{
		{"path", "path /var/crash", "directory on the target for dumps", oneArg(setPath)},
		{"target", "ext4 UUID=…|LABEL=…|/dev/…", "the target filesystem (also ext2, ext3, xfs, btrfs)", setTarget},
		{"failure_action", "failure_action reboot", `reboot, poweroff or halt when the dump fails ("default" is an alias)`,
			oneArg(func(c *File, s string) error { return setAction(&c.FailureAction, s) })},
		{"final_action", "final_action reboot", "reboot, poweroff or halt after the dump",
			oneArg(func(c *File, s string) error { return setAction(&c.FinalAction, s) })},
		{"extra_modules", "extra_modules mod1 mod2", "more kernel modules for the crash kernel",
			someArgs("module name", func(c *File, args []string) { c.ExtraModules = args })},
		{"target_timeout", "target_timeout 60", "seconds the crash kernel waits for the target", oneArg(setTimeout)},
		{"cmdline_append", "cmdline_append arg1 arg2", "more crash kernel command line arguments",
			someArgs("argument", func(c *File, args []string) { c.CmdlineAppend = args })},
		{"key_transport", "key_transport auto", "how LUKS volume keys reach the crash kernel: auto, kernel or initrd", oneArg(setTransport)},
		{"dump_level", "dump_level 31", "pages left out: 1 zero, 2 cache, 4 private cache, 8 user, 16 free", oneArg(setLevel)},
		{"compression", "compression snappy", "per-page compression: snappy, lzo, zstd, zlib or none",
			oneArg(func(c *File, s string) error { return setDump(c, func(d *Dump) { d.Compression = s }) })},
		{"format", "format kdump", "kdump (kdump-compressed) or elf",
			oneArg(func(c *File, s string) error { return setDump(c, func(d *Dump) { d.Format = s }) })},
		{"core_collector", "core_collector makedumpfile -l -d 31", "kdump.conf's collector line, read for dump level, compression and format", setCollector},
	}
}

// apply sets what the line f, whose directive Parse resolved to key, says.
func (c *File) apply(key string, f []string) error {
	for _, d := range directives() {
		if d.name == key {
			return d.set(c, f[0], f[1:])
		}
	}
	if unsupported(key) {
		return errors.New("not supported by ukdump")
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

func setAction(dst *Action, s string) error {
	a, err := ParseAction(s)
	if err != nil {
		return err
	}
	*dst = a
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

func setTransport(c *File, s string) error {
	switch t := Transport(s); t {
	case Auto, Kernel, Initrd:
		c.KeyTransport = t
		return nil
	}
	return fmt.Errorf("unknown transport %q (want auto, kernel or initrd)", s)
}

func setLevel(c *File, s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 31 {
		return fmt.Errorf("%q is not a dump level from 0 to 31", s)
	}
	c.Dump.Level = n
	return nil
}

// setDump applies edit to the dump settings if the result is valid. The
// "config: " of Validate's error goes: ReadFile puts it before the line.
func setDump(c *File, edit func(*Dump)) error {
	d := c.Dump
	edit(&d)
	if err := d.Validate(); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "config: "))
	}
	c.Dump = d
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
// -d level, -c zlib, -l lzo (written as snappy, which is faster for about
// the same size), -p snappy, -z zstd, -E ELF. Options that only tune makedumpfile's own output
// (--message-level, -F, --num-threads ...) are accepted and ignored.
func parseCollector(args []string, d Dump) (Dump, error) {
	if len(args) == 0 || args[0] != "makedumpfile" {
		return d, errors.New("only makedumpfile options are understood (ukdump collects the dump itself)")
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-d" && i+1 < len(args):
			i++
			n, err := strconv.Atoi(args[i])
			if err != nil || n < 0 || n > 31 {
				return d, fmt.Errorf("-d %q is not a dump level from 0 to 31", args[i])
			}
			d.Level = n
		case a == "-c":
			d.Compression = "zlib"
		case a == "-l" || a == "-p":
			d.Compression = "snappy"
		case a == "-z":
			d.Compression = "zstd"
		case a == "-E":
			d.Format = "elf"
		case a == "--message-level" || a == "--num-threads":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return d, fmt.Errorf("unexpected argument %q", a)
		}
	}
	return d, nil
}
