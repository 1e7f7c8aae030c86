// Command ukdump prepares kdump in the first kernel.
//
//	ukdump load     build the crash initramfs in memory and load the crash kernel
//	ukdump unload   remove the crash kernel
//	ukdump status   show whether a crash kernel is loaded, and for what
//	ukdump mkinitrd -o FILE   write the crash initramfs to a file
//	ukdump convert IN OUT     filter and compress an ELF vmcore
//	ukdump dmesg DUMP         print the kernel log of a dump
//	ukdump info DUMP          describe a dump
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/loader"
)

const usage = `usage: ukdump <command> [flags]

commands:
  load       build the crash initramfs in memory and load the crash kernel
  unload     unload the crash kernel
  status     show the crash kernel state
  mkinitrd   write the crash initramfs to a file (-o FILE)
  convert    filter and compress an ELF vmcore: convert [-d 31] [-c snappy] [-elf] IN OUT
  dmesg      print the kernel log held in a dump (ELF or kdump-compressed)
  info       describe a dump: kernel, crash time, pages, level, compression

Run "ukdump <command> -h" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the exit code: 0 success, 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("ukdump "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o loader.Options
	addLoadFlags := func() {
		fs.StringVar(&o.ConfigFile, "config", "", "configuration file (default /etc/ukdump.conf)")
		fs.StringVar(&o.Kernel, "kernel", "", "crash kernel image (default /boot/vmlinuz-$(uname -r))")
		fs.StringVar(&o.ModuleDir, "modules", "", "kernel module directory (default /lib/modules/$(uname -r))")
		fs.StringVar(&o.KernelConfig, "kernel-config", "", "kernel config, to pick the initramfs compression (default /boot/config-$(uname -r))")
		fs.StringVar(&o.Init, "init", "", "static kdumpinit binary (default: beside ukdump, then /usr/lib/ukdump)")
	}
	addKeyFlags := func() {
		fs.StringVar(&o.Keys.KeyFile, "key-file", "", "file holding a LUKS passphrase, - for standard input (tried after the keyring and the live mapping)")
		fs.BoolVar(&o.ReuseKeys, "reuse-keys", false, "kernel transport: reload with the volume keys saved by the last load")
	}
	fs.StringVar(&o.StateFile, "state", loader.DefaultStateFile, "where load records what it loaded")
	var output string
	switch cmd {
	case "load":
		addLoadFlags()
		addKeyFlags()
	case "mkinitrd":
		addLoadFlags()
		fs.StringVar(&output, "o", "", "output file (required)")
	case "unload", "status":
	case "convert", "dmesg", "info":
		return offline(cmd, args, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ukdump: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ukdump %s: unexpected arguments %q\n", cmd, fs.Args())
		return 2
	}
	var err error
	switch cmd {
	case "load":
		o.Keys.Prompt = terminalPrompt()
		err = load(o, stdout)
	case "mkinitrd":
		if output == "" {
			fmt.Fprintln(stderr, "ukdump mkinitrd: -o FILE is required")
			return 2
		}
		err = mkinitrd(o, output, stdout)
	case "unload":
		if err = kexec.UnloadCrash(); err == nil {
			err = loader.RemoveState(o.StateFile)
			fmt.Fprintln(stdout, "crash kernel unloaded")
		}
	case "status":
		err = status(o.StateFile, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ukdump %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func prepare(o loader.Options) (*loader.Plan, error) {
	o, err := loader.Defaults(o)
	if err != nil {
		return nil, err
	}
	return loader.Prepare(o)
}

func load(o loader.Options, out io.Writer) error {
	p, err := prepare(o)
	if err != nil {
		return err
	}
	st, err := loader.Load(p, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "crash kernel loaded: %s\ntarget: %s on %s\ncmdline: %s\n", st.Kernel, st.Target, st.TargetDevice, st.Cmdline)
	return nil
}

func mkinitrd(o loader.Options, output string, out io.Writer) error {
	p, err := prepare(o)
	if err != nil {
		return err
	}
	if err := loader.WriteInitramfs(p, output, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\n", output)
	return nil
}

func status(stateFile string, out io.Writer) error {
	ks, err := kexec.ReadStatus("/sys")
	if err != nil {
		return err
	}
	loaded := "no"
	if ks.Loaded {
		loaded = "yes"
	}
	fmt.Fprintf(out, "crash kernel loaded: %s\nreserved memory: %d MiB\n", loaded, ks.Reserved>>20)
	if ks.Reserved == 0 {
		fmt.Fprintln(out, "hint: no crashkernel= reservation; add crashkernel=256M to the kernel command line")
	}
	st, err := loader.ReadState(stateFile)
	if err != nil {
		return err
	}
	if st != nil && ks.Loaded {
		fmt.Fprintf(out, "kernel: %s\ntarget: %s on %s\ninitramfs: %d KiB\nloaded at: %s\n",
			st.Kernel, st.Target, st.TargetDevice, st.InitramfsSize>>10, st.LoadedAt.Format("2006-01-02 15:04:05 UTC"))
		for _, v := range st.Volumes {
			fmt.Fprintf(out, "LUKS volume: %s (UUID %s): key handed over, transport %s, from %s\n", v.Name, v.UUID, v.Transport, v.Source)
		}
	}
	return nil
}
