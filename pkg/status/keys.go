package status

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/crypttab"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader"
)

// Env is what Gather reads besides loader's options: how this system opens
// its LUKS volumes at boot, for the advice on a volume whose key a new load
// would not find by itself.
type Env struct {
	// Crypttab is the crypttab file (crypttab.DefaultFile).
	Crypttab string
	// Openers are the programs that open crypttab's volumes here.
	Openers crypttab.Openers
}

// VolumeKey is where a new load (a reload, the load at the next boot)
// would take a LUKS volume's key from now.
type VolumeKey struct {
	Volume loader.Volume
	Probe  loader.KeyProbe
	// Entry is the volume's crypttab line; nil without one.
	Entry *crypttab.Entry
	// Initramfs is set when Debian's cryptroot opens the volume in the
	// initramfs.
	Initramfs bool
}

// gatherKeys looks, as load would, for the key of each LUKS volume under
// the target, reading and wiping what it finds; it never loads.
func (r *Report) gatherKeys(o loader.Options, cf *config.File, env Env) {
	vols, err := loader.TargetVolumes(o.Sys, *r.Target)
	if err != nil || len(vols) == 0 {
		r.KeysErr = err
		return
	}
	if r.KeyTransport, err = loader.KeyTransport(cf.KeyTransport, o.CrashDM); err != nil {
		r.KeysErr = err
		return
	}
	r.Openers, r.Crypttab = env.Openers, env.Crypttab
	var tab *crypttab.File
	switch b, err := os.ReadFile(env.Crypttab); {
	case err == nil:
		tab = crypttab.Parse(b)
	case !errors.Is(err, fs.ErrNotExist):
		r.Errs = append(r.Errs, fmt.Errorf("crypttab: %w", err))
	}
	initramfs, err := crypttab.InitramfsDevices(o.Sys, o.ProcDir)
	if err != nil {
		r.Errs = append(r.Errs, err)
	}
	for _, v := range vols {
		k := VolumeKey{Volume: v, Probe: loader.ProbeKey(v, r.KeyTransport, o.Keys)}
		if tab != nil {
			if e, ok := tab.Find(o.Sys, crypttab.Volume{Name: v.Name, UUID: v.UUID, Device: v.Backing}); ok {
				k.Entry = &e
			}
		}
		k.Initramfs = env.Openers.InInitramfs(v.Mapped, k.Entry, initramfs)
		r.Keys = append(r.Keys, k)
	}
}

// Advice says what to do so that a new load finds the key by itself: what
// leaves it in a keyring at boot on this system, or else a passphrase.
func (k VolumeKey) Advice(o crypttab.Openers, t config.Transport) string {
	if k.Volume.Header.Version == 1 {
		return "cryptsetup keeps a LUKS1 key in the live dm-crypt table, which only root reads: run this as root"
	}
	if k.Initramfs {
		return "reboot: from the next boot on, the ukdump initramfs hook has cryptroot keep the key in the dm-crypt table (it is installed with the package; run update-initramfs -u if you installed by hand)"
	}
	if ok, _ := o.LinkVolumeKey(); ok && k.Entry != nil {
		desc := keys.Description(k.Volume.UUID)
		// A user key serves the kernel transport too: the loader makes a
		// logon key of it for the load.
		v, _ := k.Entry.Option(crypttab.LinkVolumeKey)
		if v == crypttab.LinkVolumeKeyValue(crypttab.KeyType(t), desc) || v == crypttab.LinkVolumeKeyValue("user", desc) {
			return "its crypttab line has link-volume-key=" + v + ": the key is there once systemd-cryptsetup opens the volume again (reboot)"
		}
		return "run ukdump setup-crypttab, then reboot"
	}
	return "ukdump load --key-file FILE (a passphrase of the volume; or run ukdump load on a terminal)"
}

// printKeys says, for each LUKS volume under the target, where a new load
// would take its key from, and what to do when from nowhere.
func (r *Report) printKeys(w io.Writer) {
	if r.KeysErr != nil {
		fmt.Fprintf(w, "LUKS keys:    %v\n", r.KeysErr)
		return
	}
	if len(r.Keys) == 0 {
		return
	}
	fmt.Fprintf(w, "LUKS keys:    where a new load (reload, boot) takes them from, %s transport:\n", r.KeyTransport)
	for _, k := range r.Keys {
		v, p := k.Volume, k.Probe
		fmt.Fprintf(w, "  %s (UUID %s): ", v.Name, v.UUID)
		switch {
		case p.Err != nil:
			fmt.Fprintf(w, "a load FAILS: %v\n", p.Err)
		case p.From != "":
			fmt.Fprintf(w, "%s (checked against the LUKS header)\n", p.Source)
		case p.Unreadable:
			fmt.Fprintf(w, "user key %s, which this process cannot read; ukdump.service can (it possesses root's user keyring, KeyringMode=shared, and has CAP_SYS_ADMIN and CAP_SETUID, which a sealed key needs)\n", keys.Description(v.UUID))
		default:
			fmt.Fprintf(w, "none without a passphrase: %s\n", strings.Join(p.Notes, "; "))
			if r.reusable(v.UUID) {
				fmt.Fprintln(w, "    ukdump reload reuses the key the loaded crash kernel holds")
			}
			fmt.Fprintf(w, "    to fix: %s\n", k.Advice(r.Openers, r.KeyTransport))
		}
	}
}

// reusable reports whether a reload can reuse the key the loaded crash
// kernel holds for the volume (kernel transport, crash_dm_crypt_keys).
func (r *Report) reusable(uuid string) bool {
	if r.State == nil || !r.Kexec.Loaded || r.KeyTransport != config.Kernel {
		return false
	}
	for _, v := range r.State.Volumes {
		if v.UUID == uuid && v.Transport == config.Kernel {
			return true
		}
	}
	return false
}
