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
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/mkinitrd"
	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/keys"
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
	// ProcDir is where proc is mounted, normally /proc.
	ProcDir string
	Sys     blockdev.Sys
	// StateFile records what was loaded, for status.
	StateFile string
	// CrashDM is the crash_dm_crypt_keys configfs group.
	CrashDM keys.CrashDM
	// Keys are the extra key sources for LUKS volumes.
	Keys KeyOptions
	// ReuseKeys reloads with the keys the kernel saved at the last load
	// (kernel transport), for when the logon keys are gone.
	ReuseKeys bool
	// HasLogonKey reports whether a logon key of the LUKS volume is in a
	// keyring the loader reaches; nil looks in the keyrings.
	HasLogonKey func(uuid string) bool
	// LiveTable returns the table of a live device-mapper mapping; nil
	// asks the kernel (dm.LiveTable).
	LiveTable func(name string) ([]dm.Target, error)
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
	k := Installed("/", rel)
	set(&o.Kernel, k.Image)
	set(&o.ModuleDir, k.Modules)
	set(&o.KernelConfig, k.Config)
	set(&o.StateFile, DefaultStateFile)
	set(&o.ProcDir, "/proc")
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
	if o.CrashDM.Dir == "" {
		o.CrashDM = keys.DefaultCrashDM()
	}
	if o.Keys.Log == nil {
		o.Keys.Log = io.Discard
	}
	return o, nil
}

// InstalledKernel is where a kernel release's files are.
type InstalledKernel struct {
	Image, Config, Modules string
}

// Installed finds the image, config and module tree of kernel release
// rel under root, where distributions put them: /boot/vmlinuz-<rel> and
// /boot/config-<rel> (Debian's kernels up to 6.x), or beside the modules
// in /usr/lib/modules/<rel>/vmlinuz and config (Debian's 7.x packages,
// Fedora's kernel-core). What is nowhere gets the /boot name, which the
// error then shows.
func Installed(root, rel string) InstalledKernel {
	first := func(names ...string) string {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(root, n)); err == nil {
				return n
			}
		}
		return names[0]
	}
	return InstalledKernel{
		Image:   first("/boot/vmlinuz-"+rel, "/usr/lib/modules/"+rel+"/vmlinuz", "/lib/modules/"+rel+"/vmlinuz"),
		Config:  first("/boot/config-"+rel, "/usr/lib/modules/"+rel+"/config", "/lib/modules/"+rel+"/config"),
		Modules: first("/lib/modules/"+rel, "/usr/lib/modules/"+rel),
	}
}

// findInit returns the first kdumpinit in initDirs, or the Debian path
// for the error message when there is none.
func findInit() string {
	exe, err := os.Executable()
	if err != nil {
		exe = ""
	}
	for _, d := range initDirs(exe) {
		p := filepath.Join(d, "kdumpinit")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/usr/lib/ukdump/kdumpinit"
}

// initDirs are where findInit looks, in order: beside the running binary
// exe, so that a build tree works without installing; <prefix>/lib/ukdump
// for exe in <prefix>/sbin, so that "make install PREFIX=/usr/local" works;
// then the distributions' places.
func initDirs(exe string) []string {
	var dirs []string
	if exe != "" {
		d := filepath.Dir(exe)
		dirs = append(dirs, d, filepath.Join(d, "..", "lib", "ukdump"))
	}
	return append(dirs, "/usr/lib/ukdump", "/usr/libexec/ukdump")
}

// Plan is everything needed to build and load one crash kernel.
type Plan struct {
	Options Options
	File    *config.File
	Target  Target
	Build   mkinitrd.Options
	// Volumes are the LUKS devices under the target, lowest first.
	Volumes []Volume
	// LVs are the LVM logical volumes under the target, lowest first.
	LVs []LV
	// Transport carries their keys; empty without volumes.
	Transport config.Transport
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
	target, err := FindTarget(o, cf)
	if err != nil {
		return nil, err
	}
	dev := target.Device
	mods, err := o.Sys.Modules(dev.Name)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	stack, err := o.Sys.Stack(dev.Name)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	vols, err := findVolumes(o.Sys, stack)
	if err != nil {
		return nil, err
	}
	live := o.LiveTable
	if live == nil {
		live = dm.LiveTable
	}
	lvs, err := findLVs(o.Sys, stack, live)
	if err != nil {
		return nil, err
	}
	if err := checkOrder(vols, lvs); err != nil {
		return nil, err
	}
	if len(lvs) > 0 {
		// dm-mod holds the linear and striped targets itself.
		mods = append(mods, "dm_mod")
	}
	var transport config.Transport
	var cvols []config.Volume
	if len(vols) > 0 {
		if transport, err = chooseTransport(cf.KeyTransport, o.CrashDM); err != nil {
			return nil, err
		}
		mods = append(mods, "dm_mod", "dm_crypt")
		for _, v := range vols {
			cvols = append(cvols, volumeConfig(v, transport))
		}
	}
	mods = append(mods, fsFamily(target.FS.FSType))
	mods = append(mods, watchdogModules(o.Sys.SysDir)...)
	mods = append(mods, cf.ExtraModules...)
	tree, err := openModules(o.ModuleDir, o.ProcDir)
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		for _, m := range cryptoModules(v.Header.Cipher) {
			if tree == nil {
				break
			}
			if _, ok := tree.Lookup(m); ok {
				mods = append(mods, m)
			}
		}
	}
	host, err := os.Hostname()
	if err != nil || host == "" || host == "(none)" {
		host = "localhost"
	}
	return &Plan{
		Options:   o,
		File:      cf,
		Target:    target,
		Volumes:   vols,
		LVs:       lvs,
		Transport: transport,
		Build: mkinitrd.Options{
			Init: o.Init,
			Config: config.Init{
				Target:        target.FS,
				Path:          target.Path,
				Hostname:      host,
				TargetTimeout: config.Duration(cf.TargetTimeout),
				FailureAction: cf.FailureAction,
				FinalAction:   cf.FinalAction,
				Volumes:       cvols,
				LVM:           lvmConfigs(lvs),
				Dump:          cf.Dump,
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

// openModules opens the module tree. A kernel built without module support
// (no /proc/modules) has no tree and needs none: its drivers are built in.
func openModules(dir, procDir string) (*kmod.Tree, error) {
	tree, err := kmod.Open(dir)
	if err == nil {
		return tree, nil
	}
	_, perr := os.Stat(filepath.Join(procDir, "modules"))
	_, derr := os.Stat(dir)
	if errors.Is(perr, os.ErrNotExist) && errors.Is(derr, os.ErrNotExist) {
		return nil, nil
	}
	return nil, fmt.Errorf("loader: %w", err)
}

// loadable drops modules that are built into the kernel: the module tree's
// modules.builtin says so, or sysfs shows the module without the initstate
// that only loadable modules have.
func loadable(names []string, tree *kmod.Tree, sysDir string) []string {
	if tree == nil {
		return nil
	}
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

// State is what status shows about the loaded crash kernel: what it will
// do when the machine crashes. It never holds secrets.
type State struct {
	Kernel string `json:"kernel"`
	// Release is the crash kernel's release (uname -r).
	Release string `json:"release"`
	// Target describes the target for people; TargetUUID is its
	// filesystem UUID, TargetDevice its device node now.
	Target       string `json:"target"`
	TargetUUID   string `json:"target_uuid"`
	TargetDevice string `json:"target_device"`
	// Path is the dump directory on the target filesystem.
	Path          string        `json:"path"`
	FinalAction   config.Action `json:"final_action"`
	FailureAction config.Action `json:"failure_action"`
	Cmdline       string        `json:"cmdline"`
	InitramfsSize int64         `json:"initramfs_size"`
	LoadedAt      time.Time     `json:"loaded_at"`
	Volumes       []VolumeState `json:"volumes,omitempty"`
	LVM           []LVMState    `json:"lvm,omitempty"`
}

// LVMState names an LVM volume the crash kernel activates.
type LVMState struct {
	VG string `json:"vg"`
	LV string `json:"lv"`
	// Seqno is the VG metadata's at load time.
	Seqno uint64 `json:"seqno"`
}

// VolumeState tells which LUKS volume got its key how; never the key.
type VolumeState struct {
	UUID      string           `json:"uuid"`
	Name      string           `json:"name"`
	Transport config.Transport `json:"transport"`
	Source    string           `json:"source"`
}

// Load builds the initramfs in memory and loads the crash kernel. The
// initramfs never touches a disk: it lives in a memfd that is closed once
// the kernel has copied it into the crash reservation, and the part holding
// keys is overwritten before that.
func Load(p *Plan, out io.Writer) (st *State, err error) {
	// A process keyring lives in the credentials of the thread that made
	// it: kexec_file_load's request_key must run on the thread that added
	// the temporary logon keys, so this goroutine keeps its thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ks, err := checkReservation(p)
	if err != nil {
		return nil, err
	}
	kernel, err := openKernel(p.Options.Kernel)
	if err != nil {
		return nil, err
	}
	defer kernel.Close()
	hand, err := prepareKeys(p, out)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := hand.cleanup(); cerr != nil {
			st, err = nil, errors.Join(err, cerr)
		}
	}()
	for _, lv := range p.LVs {
		c := lv.Config
		fmt.Fprintf(out, "LVM volume %s/%s: activated by the crash kernel from the metadata on its %d PV(s) (seqno %d, %d table line(s))\n",
			c.VG, c.LV, len(c.PVs), c.Seqno, len(c.Table))
	}
	build := p.Build
	build.Secrets = hand.secrets
	build.Config.Volumes = hand.volumes

	initrd, err := newMemfd("ukdump-initramfs")
	if err != nil {
		return nil, err
	}
	defer initrd.Close()
	// The kernel has its own copy once kexec_file_load returns; the
	// memfd's must not outlive it, on every path.
	defer func() {
		if werr := initrd.wipeSecrets(); werr != nil {
			st, err = nil, errors.Join(err, fmt.Errorf("loader: wiping the keys in the in-memory initramfs: %w", werr))
		}
	}()
	rep, err := mkinitrd.Build(initrd, build)
	// The memfd has the keys now; logon keys must live until the load.
	hand.wipe()
	if err != nil {
		return nil, err
	}
	rep.Print(out)
	if e, err := p.estimate(rep, ks.Reserved); err == nil && !e.Enough() {
		fmt.Fprintf(out, "warning: the crash kernel may run out of memory: it needs about %d MiB, %d MiB are reserved (\"ukdump estimate\" explains; %s is enough)\n",
			e.Total>>20, ks.Reserved>>20, e.Cmdline())
	}
	cmdline := kexec.WithCPUs(kexec.CrashCmdline(p.Options.Cmdline, p.File.CmdlineAppend), p.File.CrashCPUs)
	via, err := kexec.LoadCrash(kernel, initrd.File, cmdline)
	if err != nil {
		return nil, err
	}
	if via == kexec.ViaLoad {
		fmt.Fprintf(out, "loaded with %s: the running kernel has no kexec_file_load (CONFIG_KEXEC_FILE); ukdump built the ELF core header and the device tree\n", via)
	}
	st = &State{
		Kernel:        p.Options.Kernel,
		Release:       kernelRelease(p.Options.Kernel),
		Target:        p.Target.String(),
		TargetUUID:    p.Target.FS.UUID,
		TargetDevice:  p.Target.Device.Path,
		Path:          p.Target.Path,
		FinalAction:   p.File.FinalAction,
		FailureAction: p.File.FailureAction,
		Cmdline:       cmdline,
		InitramfsSize: rep.Size,
		LoadedAt:      time.Now().UTC(),
		Volumes:       hand.sources,
	}
	for _, lv := range p.LVs {
		st.LVM = append(st.LVM, LVMState{VG: lv.Config.VG, LV: lv.Config.LV, Seqno: lv.Config.Seqno})
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

// writeState replaces the state file atomically: a new file (never an
// existing one, never through a symlink) renamed over the old name, so a
// reader sees the old state or the new one, and a symlink planted at name
// is replaced rather than written through.
func writeState(name string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("loader: state: %w", err)
	}
	b = append(b, '\n') // a text file, whole lines for cat and editors
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("loader: state: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".state-*")
	if err != nil {
		return fmt.Errorf("loader: state: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		if rerr := os.Remove(f.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
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
