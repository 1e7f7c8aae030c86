// Package loader prepares the crash kernel in the first kernel: it reads
// /etc/ukdump.conf, finds the dump target and the drivers under it, builds
// the crash initramfs in memory and loads kernel and initramfs with
// kexec_file_load.
package loader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/mkinitrd"
	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/kmod"
)

// Options say where everything is. Empty fields take the running system's
// defaults (see Defaults).
type Options struct {
	ConfigFile   string
	Kernel       string
	ModuleDir    string
	KernelConfig string
	// Init is the static kdumpinit binary.
	Init string
	// Cmdline is the running kernel's command line.
	Cmdline string
	Sys     blockdev.Sys
	// StateFile records what was loaded, for status.
	StateFile string
}

// DefaultStateFile lives on tmpfs: a loaded crash kernel does not survive a
// reboot, and neither should the record of it.
const DefaultStateFile = "/run/ukdump/state.json"

// Defaults fills the empty fields of o for the running kernel.
func Defaults(o Options) (Options, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return o, fmt.Errorf("loader: uname: %w", err)
	}
	rel := unix.ByteSliceToString(uts.Release[:])
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&o.ConfigFile, config.DefaultConfigFile)
	set(&o.Kernel, "/boot/vmlinuz-"+rel)
	set(&o.ModuleDir, "/lib/modules/"+rel)
	set(&o.KernelConfig, "/boot/config-"+rel)
	set(&o.StateFile, DefaultStateFile)
	if o.Init == "" {
		o.Init = findInit()
	}
	if o.Cmdline == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return o, fmt.Errorf("loader: %w", err)
		}
		o.Cmdline = string(b)
	}
	if o.Sys == (blockdev.Sys{}) {
		o.Sys = blockdev.Host()
	}
	return o, nil
}

// findInit looks for kdumpinit beside the running binary first, so that a
// build tree works without installing, then in the installed locations.
func findInit() string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	dirs = append(dirs, "/usr/lib/ukdump", "/usr/libexec/ukdump")
	for _, d := range dirs {
		p := filepath.Join(d, "kdumpinit")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/usr/lib/ukdump/kdumpinit"
}

// Plan is everything needed to build and load one crash kernel.
type Plan struct {
	Options Options
	File    *config.File
	Target  blockdev.Device
	Build   mkinitrd.Options
}

// Prepare reads the configuration and finds the target and its modules.
func Prepare(o Options) (*Plan, error) {
	cf, err := config.ReadFile(o.ConfigFile)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.Kernel); err != nil {
		return nil, fmt.Errorf("loader: crash kernel: %w", err)
	}
	dev, info, err := o.Sys.Resolve(cf.Target.Spec)
	if err != nil {
		return nil, fmt.Errorf("loader: dump target: %w", err)
	}
	if fsFamily(info.Type) != fsFamily(cf.Target.FSType) {
		return nil, fmt.Errorf("loader: dump target %s holds %s, not %s", cf.Target.Spec, info.Type, cf.Target.FSType)
	}
	mods, err := o.Sys.Modules(dev.Name)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	mods = append(mods, fsFamily(cf.Target.FSType))
	mods = append(mods, cf.ExtraModules...)
	tree, err := kmod.Open(o.ModuleDir)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" || host == "(none)" {
		host = "localhost"
	}
	target := cf.Target
	target.UUID = info.UUID
	return &Plan{
		Options: o,
		File:    cf,
		Target:  dev,
		Build: mkinitrd.Options{
			Init: o.Init,
			Config: config.Init{
				Target:        target,
				Path:          cf.Path,
				Hostname:      host,
				TargetTimeout: config.Duration(cf.TargetTimeout),
				FailureAction: cf.FailureAction,
				FinalAction:   cf.FinalAction,
			},
			Tree:        tree,
			Modules:     loadable(mods, tree, o.Sys.SysDir),
			Compression: mkinitrd.CompressionFor(o.KernelConfig),
		},
	}, nil
}

// fsFamily maps ext2 and ext3 to ext4, whose driver mounts all three and
// whose superblocks the probe cannot tell apart.
func fsFamily(fs string) string {
	if strings.HasPrefix(fs, "ext") {
		return "ext4"
	}
	return fs
}

// loadable drops modules that are built into the kernel: the module tree's
// modules.builtin says so, or sysfs shows the module without the initstate
// that only loadable modules have.
func loadable(names []string, tree *kmod.Tree, sysDir string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		n = kmod.Normalize(n)
		if seen[n] || tree.Builtin(n) {
			continue
		}
		seen[n] = true
		if _, ok := tree.Lookup(n); !ok {
			_, serr := os.Stat(filepath.Join(sysDir, "module", n))
			_, ierr := os.Stat(filepath.Join(sysDir, "module", n, "initstate"))
			if serr == nil && ierr != nil {
				continue
			}
		}
		out = append(out, n)
	}
	return out
}

// State is what status shows about the loaded crash kernel. It never holds
// secrets.
type State struct {
	Kernel        string    `json:"kernel"`
	Target        string    `json:"target"`
	TargetDevice  string    `json:"target_device"`
	Cmdline       string    `json:"cmdline"`
	InitramfsSize int64     `json:"initramfs_size"`
	LoadedAt      time.Time `json:"loaded_at"`
}

// Load builds the initramfs in memory and loads the crash kernel. The
// initramfs never touches a disk: it lives in a memfd that is closed once
// the kernel has copied it into the crash reservation.
func Load(p *Plan, out io.Writer) (*State, error) {
	kernel, err := os.Open(p.Options.Kernel)
	if err != nil {
		return nil, fmt.Errorf("loader: crash kernel: %w", err)
	}
	defer kernel.Close()
	fd, err := unix.MemfdCreate("ukdump-initramfs", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("loader: memfd: %w", err)
	}
	initrd := os.NewFile(uintptr(fd), "ukdump-initramfs")
	defer initrd.Close()
	rep, err := mkinitrd.Build(initrd, p.Build)
	if err != nil {
		return nil, err
	}
	rep.Print(out)
	cmdline := kexec.CrashCmdline(p.Options.Cmdline, p.File.CmdlineAppend)
	if err := kexec.LoadCrash(kernel, initrd, cmdline); err != nil {
		return nil, err
	}
	st := &State{
		Kernel:        p.Options.Kernel,
		Target:        fmt.Sprintf("%s %s (UUID=%s)", p.File.Target.FSType, p.File.Target.Spec, p.Build.Config.Target.UUID),
		TargetDevice:  p.Target.Path,
		Cmdline:       cmdline,
		InitramfsSize: rep.Size,
		LoadedAt:      time.Now().UTC(),
	}
	if err := writeState(p.Options.StateFile, st); err != nil {
		fmt.Fprintf(out, "warning: %v\n", err)
	}
	return st, nil
}

// WriteInitramfs builds the initramfs into a file, for distributions that
// package it.
func WriteInitramfs(p *Plan, name string, out io.Writer) error {
	var buf bytes.Buffer
	rep, err := mkinitrd.Build(&buf, p.Build)
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("loader: %w", err)
	}
	rep.Print(out)
	return nil
}

func writeState(name string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("loader: state: %w", err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		return fmt.Errorf("loader: state: %w", err)
	}
	return nil
}

// ReadState reads what the last load recorded; a missing file is no error.
func ReadState(name string) (*State, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loader: state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("loader: state %s: %w", name, err)
	}
	return &st, nil
}

// RemoveState forgets the last load, after an unload.
func RemoveState(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("loader: state: %w", err)
	}
	return nil
}
