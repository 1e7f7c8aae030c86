// Package status tells, in plain words, whether a crash of this machine
// would give a dump now: the crashkernel= reservation, the loaded crash
// kernel, its target and LUKS volumes, and the dumps already written.
package status

import (
	"fmt"
	"path/filepath"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/crypttab"
	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/loader"
	"github.com/ukdump/ukdump/pkg/mounts"
)

// Report is the state of kdump on this machine.
type Report struct {
	Kexec kexec.Status
	// State is what the last ukdump load recorded; nil without a record.
	State *loader.State
	// Target is the target ukdump.conf names now, as the running system
	// shows it; TargetErr says why there is none.
	Target    *loader.Target
	TargetErr error
	// LoadedTargetPresent is whether the loaded crash kernel's target
	// filesystem (State.TargetUUID) is on a block device of this machine.
	LoadedTargetPresent bool
	// Mounts are the mount points of the target's filesystem.
	Mounts []mounts.Mount
	// DumpDir is the target's dump directory as this system shows it,
	// empty when the target is not mounted (or not where path lies).
	DumpDir string
	// Dumps are the dump directories in DumpDir, newest first.
	Dumps    []Dump
	DumpsErr error
	// Keys say, for each LUKS volume under the target, where a new load
	// would take its key from; KeysErr why they could not be looked for.
	// KeyTransport is the transport that load would use.
	Keys         []VolumeKey
	KeysErr      error
	KeyTransport config.Transport
	// Openers and Crypttab are how this system opens its volumes at
	// boot, for the advice on a key a load would not find.
	Openers  crypttab.Openers
	Crypttab string
	// Errs are failures to read the system, each naming what.
	Errs []error
}

// Gather reads the state of kdump. o says where the configuration, the
// state file, /proc and /sys are (loader.Defaults), and the keyrings;
// env how the system opens its LUKS volumes. It does not fail: what it
// cannot read is in Errs or the fields' errors.
func Gather(o loader.Options, env Env) *Report {
	r := &Report{}
	var err error
	if r.Kexec, err = kexec.ReadStatus(o.Sys.SysDir); err != nil {
		r.Errs = append(r.Errs, err)
	}
	if r.State, err = loader.ReadState(o.StateFile); err != nil {
		r.Errs = append(r.Errs, err)
	}
	if cf, err := config.ReadFile(o.ConfigFile); err != nil {
		r.TargetErr = err
	} else if t, err := loader.FindTarget(o, cf); err != nil {
		r.TargetErr = err
	} else {
		r.Target = &t
		r.findMounts(o)
		r.gatherKeys(o, cf, env)
	}
	if r.State != nil && r.State.TargetUUID != "" {
		if r.Target != nil && r.Target.FS.UUID == r.State.TargetUUID {
			r.LoadedTargetPresent = true
		} else {
			_, _, err := o.Sys.Find(blockdev.ByUUID(r.State.TargetUUID))
			r.LoadedTargetPresent = err == nil
		}
	}
	return r
}

// findMounts finds where the target is mounted and where its dump
// directory lies in this system, and lists the dumps there.
func (r *Report) findMounts(o loader.Options) {
	tab, err := mounts.Read(o.ProcDir)
	if err != nil {
		r.Errs = append(r.Errs, err)
		return
	}
	major, minor, err := o.Sys.Number(r.Target.Device.Name)
	if err != nil {
		r.Errs = append(r.Errs, err)
	}
	for _, m := range tab {
		if err == nil && m.Major == major && m.Minor == minor || sameDevice(m.Source, r.Target.Device.Name) {
			r.Mounts = append(r.Mounts, m)
		}
	}
	for _, m := range r.Mounts {
		if dir, ok := m.Here(r.Target.Path); ok {
			r.DumpDir = dir
			break
		}
	}
	if r.DumpDir != "" {
		r.Dumps, r.DumpsErr = List(r.DumpDir)
	}
}

// sameDevice reports whether the device node source (/dev/mapper/root) is
// the block device name (dm-0). btrfs mounts need it: their device numbers
// are per subvolume.
func sameDevice(source, name string) bool {
	real, err := filepath.EvalSymlinks(source)
	return err == nil && filepath.Base(real) == name
}

// Problems are the reasons a crash now would give no dump; none when it
// would.
func (r *Report) Problems() []string {
	var p []string
	ks := r.Kexec
	switch {
	case !ks.Supported:
		return []string{kexec.Unsupported}
	case ks.Reserved == 0:
		p = append(p, `no memory is reserved for a crash kernel: add crashkernel=<size> to the kernel command line and reboot ("ukdump estimate" gives the size)`)
	}
	switch {
	case !ks.Loaded:
		p = append(p, "no crash kernel loaded: run ukdump load (or systemctl start ukdump)")
	case r.State == nil:
		p = append(p, "a crash kernel is loaded, but ukdump load left no record of it: run ukdump reload")
	case !r.LoadedTargetPresent:
		p = append(p, fmt.Sprintf("the loaded crash kernel's target (UUID=%s) is on no block device of this machine", r.State.TargetUUID))
	}
	return p
}

// Ready reports whether a crash now would give a dump.
func (r *Report) Ready() bool { return len(r.Problems()) == 0 }

// LoadedRelease is the release of the loaded crash kernel, from the state
// file, and false when no crash kernel is loaded or none is recorded: what
// the kernel package hooks ask before they reload.
func LoadedRelease(sysDir, stateFile string) (string, bool) {
	ks, err := kexec.ReadStatus(sysDir)
	if err != nil || !ks.Loaded {
		return "", false
	}
	st, err := loader.ReadState(stateFile)
	if err != nil || st == nil || st.Release == "" {
		return "", false
	}
	return st.Release, true
}
