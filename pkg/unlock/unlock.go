// Package unlock opens the LUKS volumes under the dump target in the crash
// kernel from the volume keys the first kernel handed over: it checks each
// key against its header's digest (PBKDF2, never the keyslot KDF, which
// needs more memory than a crash kernel has), builds the dm-crypt table
// itself and creates the mapping. No key byte is logged, and every copy is
// wiped once the kernel holds the key, except the one handed to Env.Keep
// for scrubbing the dump, which its owner wipes.
package unlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/scrub"
)

// Env is what unlocking touches of the crash kernel's system.
type Env struct {
	Log     *kmsg.Logger
	Sys     blockdev.Sys
	CrashDM keys.CrashDM
	// Keep, if not nil, receives a copy of each key once it has opened
	// its header's digest, with the cipher spec of the volume, so that
	// the dump can be scrubbed of it; its owner wipes it.
	Keep *scrub.Keys
}

// Opened are the mappings Open made; Close removes them, last first.
type Opened struct {
	dm.Mappings
}

// Open maps every volume in order, waiting up to timeout for each device.
// On error the mappings made so far stay in the returned Opened for the
// caller to close. Whatever happens, every handed-over key that was not
// used (the key files of later volumes, restored user keys) is destroyed
// before Open returns.
func Open(ctx context.Context, vols []config.Volume, timeout time.Duration, env Env) (o *Opened, err error) {
	// The logon key dm-crypt looks up is added to the process keyring, which
	// lives in the credentials of the thread that made it; the table load
	// must come from that thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	o = &Opened{}
	if len(vols) == 0 {
		return o, nil
	}
	defer func() {
		if serr := scrubAll(vols); serr != nil {
			env.Log.Printf("warning: %v", serr)
			if err == nil {
				err = serr
			}
		}
	}()
	if err := dm.EnsureControl(env.Sys.SysDir); err != nil {
		return o, err
	}
	for _, v := range vols {
		if v.Transport == config.Kernel {
			if err := restore(env); err != nil {
				return o, err
			}
			break
		}
	}
	for _, v := range vols {
		if err := open(ctx, v, timeout, env); err != nil {
			return o, fmt.Errorf("LUKS %s (%s): %w", v.UUID, v.Name, err)
		}
		o.Add(v.Name)
	}
	return o, nil
}

// scrubAll destroys what is left of the handed-over keys: the initramfs key
// files (overwritten, then removed) and the user keys the kernel restored.
// After a failure these would otherwise stay in the crash kernel's memory
// for as long as it runs.
func scrubAll(vols []config.Volume) error {
	var errs []error
	for _, v := range vols {
		switch v.Transport {
		case config.Initrd:
			if err := scrubFile(v.KeyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		case config.Kernel:
			if id, err := keys.Find("user", v.KeyDesc); err == nil {
				if err := keys.Invalidate(id); err != nil {
					errs = append(errs, fmt.Errorf("unlock: dropping restored key %s: %w", v.KeyDesc, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// restore asks the kernel for the keys it saved at load time.
func restore(env Env) error {
	if err := env.CrashDM.MountConfigfs(); err != nil {
		return err
	}
	if !env.CrashDM.Available() {
		return fmt.Errorf("unlock: this crash kernel has no %s, but the volume keys were handed over through it", env.CrashDM.Dir)
	}
	if err := env.CrashDM.Restore(); err != nil {
		return err
	}
	env.Log.Printf("asked the kernel to restore the saved volume keys")
	return nil
}

func open(ctx context.Context, v config.Volume, timeout time.Duration, env Env) (err error) {
	env.Log.Printf("waiting up to %s for LUKS volume %s", timeout, v.UUID)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dev, info, err := env.Sys.Wait(wctx, blockdev.ByUUID(v.UUID), 200*time.Millisecond)
	if err != nil {
		return fmt.Errorf("device did not appear within %s: %w", timeout, err)
	}
	if info.Type != "crypto_LUKS" {
		return fmt.Errorf("%s has UUID %s but holds %s, not LUKS", dev.Path, v.UUID, info.Type)
	}
	h, err := luks.ReadFile(dev.Path)
	if err != nil {
		return err
	}
	// Before anything is computed with this header: it must be the one the
	// first kernel checked the key against.
	if fp := h.Fingerprint(); fp != v.Header {
		return fmt.Errorf("the LUKS header on %s changed since \"ukdump load\" (%s, loaded with %s): refusing it (run \"ukdump reload\")",
			dev.Path, fp, v.Header)
	}
	size, err := env.Sys.Size(dev.Name)
	if err != nil {
		return err
	}
	table, err := h.Table(size)
	if err != nil {
		return fmt.Errorf("refusing to map %s: %w", dev.Path, err)
	}

	key, err := checked(v, h, table.Cipher, dev.Path, env)
	if err != nil {
		return err
	}
	defer keys.Wipe(key)

	// dm-crypt takes the key from the keyring by name, so the table (and
	// every buffer that carries it) holds no key bytes.
	desc := "ukdump:" + v.UUID
	id, err := keys.Add("logon", desc, key, keys.ProcessKeyring)
	keys.Wipe(key)
	if err != nil {
		return err
	}
	defer func() {
		if ierr := keys.Invalidate(id); ierr != nil && err == nil {
			err = fmt.Errorf("dropping the table-load key: %w", ierr)
		}
	}()
	node, err := dm.CreateCrypt(dm.Crypt{
		Name:       v.Name,
		UUID:       dmUUID(h, v.Name),
		Device:     dev.Path,
		Cipher:     table.Cipher,
		KeyRef:     keys.Reference(len(key), "logon", desc),
		IVOffset:   table.IVOffset,
		Offset:     table.Offset,
		Length:     table.Length,
		SectorSize: table.SectorSize,
		Params:     table.Params,
	})
	if err != nil {
		return err
	}
	env.Log.Printf("opened LUKS%d %s on %s as %s (%s, %d-bit key)", h.Version, v.UUID, dev.Path, node, table.Cipher, len(key)*8)
	return nil
}

// checked obtains the handed-over key of v, on device path with header h,
// and checks it against the header's digest. A key that opens it is
// handed to env.Keep with the volume's cipher spec. The caller wipes the
// key returned; a key that fails is wiped here.
func checked(v config.Volume, h *luks.Header, cipher, path string, env Env) ([]byte, error) {
	key, err := obtain(v)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = h.VerifyKey(key)
	env.Log.Printf("digest check of the %s key for %s took %d ms", v.Transport, v.UUID, time.Since(start).Milliseconds())
	if err != nil {
		keys.Wipe(key)
		return nil, fmt.Errorf("the handed-over key does not open %s, refusing to map it: %w", path, err)
	}
	env.Keep.Add(cipher, key)
	return key, nil
}

// obtain fetches the handed-over key: the user key restored from
// crash-reserved memory (invalidated once read), or the file in the
// in-memory initramfs, which is overwritten and removed once read.
func obtain(v config.Volume) ([]byte, error) {
	switch v.Transport {
	case config.Kernel:
		id, err := keys.Find("user", v.KeyDesc)
		if err != nil {
			return nil, fmt.Errorf("the first kernel handed over no key %s (was the crash kernel reloaded without keys?): %w", v.KeyDesc, err)
		}
		key, rerr := keys.Read(id)
		if err := keys.Invalidate(id); err != nil {
			keys.Wipe(key)
			return nil, fmt.Errorf("dropping the restored key %s: %w", v.KeyDesc, err)
		}
		return key, rerr
	case config.Initrd:
		f, err := os.Open(v.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("the initramfs holds no key for this volume (keys are added only by \"ukdump load\"): %w", err)
		}
		key, err := keys.ReadSecret(f, maxKeyFile)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if serr := scrubFile(v.KeyFile); err == nil && serr != nil {
			err = serr
		}
		if err != nil {
			keys.Wipe(key)
			return nil, fmt.Errorf("reading the handed-over key: %w", err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("unknown key transport %q", v.Transport)
}

// maxKeyFile bounds a key file in the initramfs: a volume key is at most
// 512 bytes (luks.maxKeySize), anything larger was not written by ukdump.
const maxKeyFile = 4096

// scrubFile overwrites a key file in the initramfs (tmpfs pages, freed
// without being cleared) with zeros and removes it.
func scrubFile(name string) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("unlock: scrubbing %s: %w", name, err)
	}
	_, werr := f.Write(make([]byte, fi.Size()))
	if err := f.Close(); werr == nil {
		werr = err
	}
	if err := os.Remove(name); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("unlock: scrubbing %s: %w", name, werr)
	}
	return nil
}

// dmUUID follows cryptsetup's convention, so that tools looking at the
// crash kernel's mappings (or a later udev) recognise them.
func dmUUID(h *luks.Header, name string) string {
	return fmt.Sprintf("CRYPT-LUKS%d-%s-%s", h.Version, strings.ReplaceAll(h.UUID, "-", ""), name)
}
