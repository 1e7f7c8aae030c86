// Package unlock opens the LUKS volumes under the dump target in the crash
// kernel from the volume keys the first kernel handed over: it checks each
// key against its header's digest (PBKDF2, never the keyslot KDF, which
// needs more memory than a crash kernel has), builds the dm-crypt table
// itself and creates the mapping. No key byte is logged, and every copy is
// wiped once the kernel holds the key.
package unlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/luks"
)

// Env is what unlocking touches of the crash kernel's system.
type Env struct {
	Log     *kmsg.Logger
	Sys     blockdev.Sys
	CrashDM keys.CrashDM
}

// Opened are the mappings Open made.
type Opened struct {
	names []string
}

// Close removes the mappings, last first.
func (o *Opened) Close() error {
	var errs []error
	for i := len(o.names) - 1; i >= 0; i-- {
		errs = append(errs, dm.Remove(o.names[i]))
	}
	o.names = nil
	return errors.Join(errs...)
}

// Open maps every volume in order, waiting up to timeout for each device.
// On error the mappings made so far stay in the returned Opened for the
// caller to close.
func Open(ctx context.Context, vols []config.Volume, timeout time.Duration, env Env) (*Opened, error) {
	// The logon key dm-crypt looks up is added to the process keyring, which
	// lives in the credentials of the thread that made it; the table load
	// must come from that thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	o := &Opened{}
	if len(vols) == 0 {
		return o, nil
	}
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
		o.names = append(o.names, v.Name)
	}
	return o, nil
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

func open(ctx context.Context, v config.Volume, timeout time.Duration, env Env) error {
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
	h, err := readHeader(dev.Path)
	if err != nil {
		return err
	}
	size, err := deviceSize(env.Sys, dev.Name)
	if err != nil {
		return err
	}
	table, err := h.Table(size)
	if err != nil {
		return fmt.Errorf("refusing to map %s: %w", dev.Path, err)
	}

	key, err := obtain(v)
	if err != nil {
		return err
	}
	defer keys.Wipe(key)
	start := time.Now()
	err = h.VerifyKey(key)
	env.Log.Printf("digest check of the %s key for %s took %d ms", v.Transport, v.UUID, time.Since(start).Milliseconds())
	if err != nil {
		return fmt.Errorf("the handed-over key does not open %s, refusing to map it: %w", dev.Path, err)
	}

	// dm-crypt takes the key from the keyring by name, so the table (and
	// every buffer that carries it) holds no key bytes.
	desc := "ukdump:" + v.UUID
	id, err := keys.Add("logon", desc, key, keys.ProcessKeyring)
	keys.Wipe(key)
	if err != nil {
		return err
	}
	defer keys.Invalidate(id)
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

// obtain fetches the handed-over key: the user key restored from
// crash-reserved memory, or the file in the in-memory initramfs, which is
// overwritten and removed once read.
func obtain(v config.Volume) ([]byte, error) {
	switch v.Transport {
	case config.Kernel:
		id, err := keys.Find("user", v.KeyDesc)
		if err != nil {
			return nil, fmt.Errorf("the first kernel handed over no key %s (was the crash kernel reloaded without keys?): %w", v.KeyDesc, err)
		}
		defer keys.Invalidate(id)
		return keys.Read(id)
	case config.Initrd:
		b, err := os.ReadFile(v.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("the initramfs holds no key for this volume (keys are added only by \"ukdump load\"): %w", err)
		}
		scrubFile(v.KeyFile, len(b))
		return b, nil
	}
	return nil, fmt.Errorf("unknown key transport %q", v.Transport)
}

// scrubFile overwrites a file in the initramfs (tmpfs pages) and removes it.
func scrubFile(name string, n int) {
	if f, err := os.OpenFile(name, os.O_WRONLY, 0); err == nil {
		f.Write(make([]byte, n))
		f.Close()
	}
	os.Remove(name)
}

func readHeader(path string) (*luks.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return luks.Parse(f)
}

func deviceSize(sys blockdev.Sys, name string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(sys.SysDir, "class", "block", name, "size"))
	if err != nil {
		return 0, err
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", name, err)
	}
	return sectors * 512, nil
}

// dmUUID follows cryptsetup's convention, so that tools looking at the
// crash kernel's mappings (or a later udev) recognise them.
func dmUUID(h *luks.Header, name string) string {
	return fmt.Sprintf("CRYPT-LUKS%d-%s-%s", h.Version, strings.ReplaceAll(h.UUID, "-", ""), name)
}
