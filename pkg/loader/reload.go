package loader

import (
	"fmt"
	"io"
	"slices"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/keys"
)

// Reload loads p over the crash kernel that is loaded: what the service's
// ExecReload and the kernel and udev hooks run. It does not unload first,
// so a failure before the kernel is called (configuration, keys,
// initramfs) leaves the old crash kernel in place. kexec_file_load itself
// frees the old crash kernel before it loads the new one, since both use
// the same reserved memory: a failure there leaves none, and Reload says
// which happened.
//
// With the kernel transport, when a volume's logon key is gone (keyring
// entries expire, a reload runs in another session) but the loaded crash
// kernel holds the keys of the same volumes, the kernel's saved keys are
// reused for this load (crash_dm_crypt_keys reuse), as "load -reuse-keys".
func Reload(p *Plan, out io.Writer) (*State, error) {
	before, err := kexec.ReadStatus(p.Options.Sys.SysDir)
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	prev, err := ReadState(p.Options.StateFile)
	if err != nil {
		return nil, err
	}
	q := *p
	if gone := logonKeysGone(p, before, prev); len(gone) > 0 {
		for _, v := range gone {
			fmt.Fprintf(out, "%s (LUKS %s): its logon key is gone; this load reuses the key the kernel saved at the last load\n", v.Name, v.UUID)
		}
		q.Options.ReuseKeys = true
	}
	st, err := Load(&q, out)
	if err != nil {
		after, serr := kexec.ReadStatus(p.Options.Sys.SysDir)
		if serr == nil {
			if note := reloadFailure(before, after); note != "" {
				fmt.Fprintln(out, note)
			}
		}
		return nil, err
	}
	return st, nil
}

// logonKeysGone returns the volumes whose logon keys the loader no longer
// reaches, when the kernel's saved keys can stand in for them: kernel
// transport, a crash kernel loaded by ukdump with the keys of exactly these
// volumes. Otherwise it returns none, and the load looks for keys as
// always.
func logonKeysGone(p *Plan, ks kexec.Status, prev *State) []Volume {
	if p.Transport != config.Kernel || p.Options.ReuseKeys || !ks.Loaded || prev == nil || len(p.Volumes) == 0 {
		return nil
	}
	var saved, want []string
	for _, v := range prev.Volumes {
		if v.Transport == config.Kernel {
			saved = append(saved, v.UUID)
		}
	}
	for _, v := range p.Volumes {
		want = append(want, v.UUID)
	}
	slices.Sort(saved)
	slices.Sort(want)
	if !slices.Equal(saved, want) {
		return nil
	}
	var gone []Volume
	for _, v := range p.Volumes {
		if !p.Options.hasLogonKey(v.UUID) {
			gone = append(gone, v)
		}
	}
	return gone
}

// hasLogonKey reports whether a logon key of the volume is in a keyring the
// loader reaches.
func (o Options) hasLogonKey(uuid string) bool {
	if o.HasLogonKey != nil {
		return o.HasLogonKey(uuid)
	}
	for _, desc := range []string{keys.Description(uuid), keys.LegacyDescription(uuid)} {
		if _, err := o.Keys.store().Find("logon", desc); err == nil {
			return true
		}
	}
	return false
}

// reloadFailure says what a failed reload left loaded.
func reloadFailure(before, after kexec.Status) string {
	switch {
	case !before.Loaded:
		return ""
	case after.Loaded:
		return "the crash kernel loaded before is still loaded: a crash now is dumped as before"
	}
	return "NO crash kernel is loaded now: the kernel drops the loaded crash kernel when a new load begins, and this one failed; fix the error and run ukdump reload"
}
