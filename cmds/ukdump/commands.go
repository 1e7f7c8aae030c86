package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/crypttab"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader"
)

// commands are ukdump's verbs, in the order the usage lists them. A new
// verb is a new entry here: the usage, "ukdump help VERB", "-h", flag
// parsing and the check of the arguments all come from the entry.
func commands() []command {
	return []command{
		loadCommand("load", "build the crash initramfs in memory and load the crash kernel", loader.Load),
		loadCommand("reload", "load again over the loaded crash kernel (service reload, kernel and udev hooks), reusing the kernel's saved keys where the logon keys are gone", loader.Reload),
		{
			name:     "unload",
			synopsis: "ukdump unload [-forget-keys] [-state FILE]",
			summary:  "unload the crash kernel",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.forgetKeys, "forget-keys", false, "also destroy the volume keys ukdump keeps sealed in root's user keyring (package removal); a later load needs them again from their source or a passphrase")
				stateFlag(fs, o)
			},
			run:    func(c *call) error { return unload(c.loader.StateFile, c.forgetKeys, c.stdout) },
			locked: true,
		},
		{
			name:     "status",
			synopsis: "ukdump status [-config FILE] [-state FILE] [-loaded-kernel]",
			summary:  "whether a crash now would give a dump, and why not; exit 1 when it would not",
			flags: func(fs *flag.FlagSet, o *opts) {
				configFlag(fs, o)
				stateFlag(fs, o)
				fs.BoolVar(&o.loadedKernel, "loaded-kernel", false, "print only the release of the loaded crash kernel; exit 1, printing nothing, when none is loaded")
			},
			run: func(c *call) error {
				protect(c.stderr)
				return showStatus(c.loader, c.loadedKernel, c.stdout)
			},
		},
		{
			name:     "test",
			synopsis: "ukdump test [-yes] [-state FILE]",
			summary:  "crash this machine now to test kdump, after saying what will happen and asking",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.yes, "yes", false, "crash without asking (needed without a terminal)")
				stateFlag(fs, o)
			},
			run:    func(c *call) error { return crashTest(c.loader.StateFile, c.yes, c.stdout) },
			locked: true,
		},
		{
			name:     "estimate",
			synopsis: "ukdump estimate [-config FILE] [-kernel IMAGE] [-modules DIR] [-kernel-config FILE] [-init BINARY]",
			summary:  "the crashkernel= this machine needs, term by term; exit 1 when the reservation is short",
			flags:    buildFlags,
			run:      func(c *call) error { return estimate(c.loader, c.stdout) },
		},
		{
			name:     "setup-crypttab",
			synopsis: "ukdump setup-crypttab [-yes] [-remove] [-crypttab FILE] [-config FILE] [-kernel IMAGE] [-modules DIR] [-kernel-config FILE] [-init BINARY]",
			summary:  "add link-volume-key= to the crypttab lines of the LUKS volumes under the target, so that the next boots leave their keys where load finds them",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.BoolVar(&o.yes, "yes", false, "apply the change without asking (needed without a terminal)")
				fs.BoolVar(&o.remove, "remove", false, "take the link-volume-key= options ukdump adds off every line instead (package removal)")
				fs.StringVar(&o.crypttab, "crypttab", crypttab.DefaultFile, "the crypttab `FILE` to edit")
				buildFlags(fs, o)
			},
			run: func(c *call) error {
				if c.remove {
					return removeCrypttab(c.crypttab, c.yes, c.stdout)
				}
				return setupCrypttab(c.loader, c.crypttab, c.yes, c.stdout)
			},
			locked: true,
		},
		{
			name:     "mkinitrd",
			synopsis: "ukdump mkinitrd -o FILE [-config FILE] [-kernel IMAGE] [-modules DIR] [-kernel-config FILE] [-init BINARY]",
			summary:  "write the crash initramfs to a file",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.output, "o", "", "output `FILE` (required)")
				buildFlags(fs, o)
			},
			run: func(c *call) error {
				if c.output == "" {
					return usageError("-o FILE is required")
				}
				return mkinitrd(c.loader, c.output, c.stdout)
			},
		},
		{
			name:     "convert",
			synopsis: "ukdump convert [-d LEVEL] [-c CODEC] [-elf] [-q] IN OUT",
			summary:  "filter and compress an ELF vmcore",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.IntVar(&o.convert.level, "d", config.DefaultDumpLevel, "dump `LEVEL`: the sum of 1 zero, 2 cache, 4 private cache, 8 user, 16 free pages left out")
				fs.TextVar(&o.convert.comp, "c", config.DefaultCompression, "per-page compression `CODEC`: "+diskdump.CompressionNames())
				fs.BoolVar(&o.convert.elf, "elf", false, "write an ELF core instead of kdump-compressed")
				fs.BoolVar(&o.convert.quiet, "q", false, "no progress lines")
			},
			args: []arg{
				{"IN", "the ELF vmcore to read, e.g. a copy of /proc/vmcore"},
				{"OUT", "the dump to write"},
			},
			run: func(c *call) error { return convert(c.args[0], c.args[1], c.convert, c.stdout, c.stderr) },
		},
		{
			name:     "dmesg",
			synopsis: "ukdump dmesg DUMP",
			summary:  "print the kernel log held in a dump",
			args:     []arg{{"DUMP", "an ELF vmcore or a kdump-compressed dump"}},
			run:      func(c *call) error { return dmesg(c.args[0], c.stdout) },
		},
		{
			name:     "info",
			synopsis: "ukdump info DUMP",
			summary:  "describe a dump: kernel, crash time, pages, level, compression",
			args:     []arg{{"DUMP", "an ELF vmcore or a kdump-compressed dump"}},
			run:      func(c *call) error { return info(c.args[0], c.stdout) },
		},
	}
}

// opts holds the flag values of one run; each verb's flags fill only their
// part.
type opts struct {
	loader       loader.Options
	output       string
	convert      convertOpts
	loadedKernel bool
	yes          bool
	remove       bool
	forgetKeys   bool
	crypttab     string
}

// loadCommand is load or reload: the same flags, run by loader.Load or
// loader.Reload.
func loadCommand(name, summary string, run func(*loader.Plan, io.Writer) (*loader.State, error)) command {
	return command{
		name:     name,
		synopsis: "ukdump " + name + " [-config FILE] [-kernel IMAGE] [-modules DIR] [-kernel-config FILE] [-init BINARY] [-key-file FILE] [-reuse-keys] [-state FILE]",
		summary:  summary,
		flags:    loadFlags,
		run: func(c *call) error {
			protect(c.stderr)
			c.loader.Keys.Prompt = terminalPrompt()
			return load(c.loader, run, c.stdout)
		},
		locked: true,
	}
}

// loadFlags are the flags of load and reload.
func loadFlags(fs *flag.FlagSet, o *opts) {
	buildFlags(fs, o)
	fs.StringVar(&o.loader.Keys.KeyFile, "key-file", "", "`FILE` holding a LUKS passphrase, every byte of it as for cryptsetup --key-file (a final newline too), - for standard input (tried after the keyring and the live mapping)")
	fs.BoolVar(&o.loader.ReuseKeys, "reuse-keys", false, "kernel transport: load with the volume keys saved by the last load")
	stateFlag(fs, o)
}

// buildFlags are the flags of the verbs that build a crash initramfs.
func buildFlags(fs *flag.FlagSet, o *opts) {
	configFlag(fs, o)
	fs.StringVar(&o.loader.Kernel, "kernel", "", "crash kernel `IMAGE` (default /boot/vmlinuz-$(uname -r), else /usr/lib/modules/$(uname -r)/vmlinuz)")
	fs.StringVar(&o.loader.ModuleDir, "modules", "", "kernel module `DIR` (default /lib/modules/$(uname -r))")
	fs.StringVar(&o.loader.KernelConfig, "kernel-config", "", "kernel config `FILE`, to pick the initramfs compression (default /boot/config-$(uname -r), else /usr/lib/modules/$(uname -r)/config)")
	fs.StringVar(&o.loader.Init, "init", "", "static kdumpinit `BINARY` (default: beside ukdump, then /usr/lib/ukdump)")
}

// configFlag names ukdump.conf.
func configFlag(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.loader.ConfigFile, "config", "", fmt.Sprintf("configuration `FILE` (default %s)", config.DefaultConfigFile))
}

// stateFlag is the flag of the verbs that read or write load's record.
func stateFlag(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.loader.StateFile, "state", loader.DefaultStateFile, "`FILE` where load records what it loaded")
}

// protect readies the process for volume keys (keys.Protect) before a verb
// reads any; a failure to lock memory is said, not fatal.
func protect(stderr io.Writer) {
	if err := keys.Protect(); err != nil {
		fmt.Fprintf(stderr, "ukdump: warning: %v\n", err)
	}
}
