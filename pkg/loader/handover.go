package loader

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/mkinitrd"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/keys"
)

// chooseTransport resolves the configured transport against what the
// running kernel offers, mounting configfs to see it: the initrd transport
// needs nothing of it.
func chooseTransport(want config.Transport, c keys.CrashDM) (config.Transport, error) {
	if want != config.Initrd {
		c.MountConfigfs() // best effort: Available says what matters
	}
	return KeyTransport(want, c)
}

// KeyTransport is the transport a load would choose now, without mounting
// anything: for the verbs that only look.
func KeyTransport(want config.Transport, c keys.CrashDM) (config.Transport, error) {
	avail := c.Available()
	switch {
	case want == config.Kernel && !avail:
		return "", fmt.Errorf("loader: key_transport kernel: this kernel has no %s (needs CONFIG_CRASH_DM_CRYPT, Linux 6.16+)", c.Dir)
	case want == config.Kernel || want == config.Auto && avail:
		return config.Kernel, nil
	}
	return config.Initrd, nil
}

// volumeConfig is what kdumpinit needs to know about a volume.
func volumeConfig(v Volume, t config.Transport) config.Volume {
	cv := config.Volume{UUID: v.UUID, Name: v.Name, Transport: t, Header: v.Header.Fingerprint()}
	if t == config.Kernel {
		cv.KeyDesc = keys.Description(v.UUID)
	} else {
		cv.KeyFile = "/" + mkinitrd.SecretsDir + "/" + v.UUID + ".key"
	}
	return cv
}

// cryptoModules lists the modules a dm-crypt cipher spec may need. The
// crash kernel has no modprobe to answer the kernel's request_module for
// "crypto-xts(aes)", so they must be loaded beforehand. Names missing from
// the module tree are built in or absent and are passed over.
func cryptoModules(cipher string) []string {
	parts := strings.SplitN(cipher, "-", 3)
	var mods []string
	switch parts[0] {
	case "aes":
		mods = append(mods, "aes_generic", "aesni_intel")
	case "serpent":
		mods = append(mods, "serpent_generic")
	case "twofish":
		mods = append(mods, "twofish_generic")
	}
	if len(parts) > 1 {
		mods = append(mods, parts[1]) // xts, cbc, ecb, lrw
		if parts[1] == "xts" || parts[1] == "lrw" {
			// Both templates wrap ecb(<cipher>), and ecb is a module in
			// Debian's kernels.
			mods = append(mods, "ecb")
		}
	}
	if len(parts) > 2 {
		if iv, hash, ok := strings.Cut(parts[2], ":"); ok && iv == "essiv" {
			mods = append(mods, "essiv", hash, hash+"_generic")
		}
	}
	return mods
}

// handover holds what Load hands to the crash kernel and must clean up.
type handover struct {
	keys    []*Key
	temp    []int
	secrets []mkinitrd.Secret
	volumes []config.Volume
	sources []VolumeState
	pass    *passphrases
}

// prepareKeys finds each volume's key and stages it for the transport: the
// kernel transport names logon keys in crash_dm_crypt_keys (adding a
// temporary logon key for a key that came as bytes); the initrd transport
// turns keys into in-memory secrets for the initramfs.
func prepareKeys(p *Plan, out io.Writer) (*handover, error) {
	h := &handover{}
	c := p.Options.CrashDM
	if len(p.Volumes) == 0 {
		if c.Available() {
			// A stale item whose logon key is gone would fail the load.
			if err := c.Set(nil); err != nil {
				return nil, err
			}
		}
		return h, nil
	}
	fmt.Fprintf(out, "LUKS volumes under the target (key transport %s):\n", p.Transport)
	items := map[string]string{}
	o := p.Options.Keys
	o.Log = out
	o.pass = &passphrases{o: o}
	h.pass = o.pass
	for _, v := range p.Volumes {
		cv := volumeConfig(v, p.Transport)
		if p.Transport == config.Kernel && p.Options.ReuseKeys {
			fmt.Fprintf(out, "  %s: reusing the key saved by the last load\n", v.Name)
			items[v.UUID] = cv.KeyDesc
			h.volumes = append(h.volumes, cv)
			h.sources = append(h.sources, VolumeState{UUID: v.UUID, Name: v.Name, Transport: p.Transport, Source: "reused"})
			continue
		}
		k, err := findKey(v, p.Transport, o)
		if err != nil {
			return nil, errors.Join(err, h.cleanup())
		}
		h.keys = append(h.keys, k)
		switch {
		case p.Transport == config.Initrd:
			h.secrets = append(h.secrets, mkinitrd.Secret{Name: strings.TrimPrefix(cv.KeyFile, "/"), Data: k.Bytes})
		case k.LogonDesc != "":
			cv.KeyDesc = k.LogonDesc
		default:
			// Only for this load: the process keyring dies with us, and
			// cleanup invalidates the key as soon as the kernel has it.
			id, err := keys.Add("logon", cv.KeyDesc, k.Bytes, keys.ProcessKeyring)
			k.Wipe()
			if err != nil {
				return nil, errors.Join(err, h.cleanup())
			}
			h.temp = append(h.temp, id)
		}
		items[v.UUID] = cv.KeyDesc
		h.volumes = append(h.volumes, cv)
		h.sources = append(h.sources, VolumeState{UUID: v.UUID, Name: v.Name, Transport: p.Transport, Source: k.Source})
	}
	if p.Transport == config.Kernel {
		if err := c.Set(items); err != nil {
			return nil, errors.Join(err, h.cleanup())
		}
		if err := c.Reuse(p.Options.ReuseKeys); err != nil {
			// Turning reuse off fails with EINVAL while no crash kernel
			// with keys is loaded: then there is nothing to turn off.
			if p.Options.ReuseKeys || !errors.Is(err, unix.EINVAL) {
				return nil, errors.Join(err, h.cleanup())
			}
		}
	}
	return h, nil
}

// cleanup invalidates temporary logon keys and wipes every key byte. A key
// that cannot be invalidated is an error: it would outlive the load.
func (h *handover) cleanup() error {
	var errs []error
	for _, id := range h.temp {
		if err := keys.Invalidate(id); err != nil {
			errs = append(errs, fmt.Errorf("loader: dropping the temporary logon key: %w", err))
		}
	}
	h.temp = nil
	h.wipe()
	return errors.Join(errs...)
}

// wipe clears the key bytes held for the initramfs and the passphrases.
func (h *handover) wipe() {
	for _, k := range h.keys {
		k.Wipe()
	}
	if h.pass != nil {
		h.pass.wipe()
	}
}
