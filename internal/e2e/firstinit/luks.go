package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/anatol/devmapper.go"
	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/luks"
)

// volume is one line of /etc/e2e/volumes: what the first system's boot
// would have done with a passphrase, done here with the known key.
//
//	<luks-uuid> <hex key> <mapping name> <table|keyring>
//
// "table" maps with the key in the dm-crypt table (cryptsetup
// --disable-keyring, LUKS1 style); "keyring" maps with a keyring reference
// and links the key as the logon key kdump-cryptsetup:vk-<uuid>, as systemd's
// crypttab option link-volume-key= does.
type volume struct {
	uuid, name, mode string
	key              []byte
}

func readVolumes() ([]volume, error) {
	f, err := os.Open("/etc/e2e/volumes")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var vols []volume
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 4 {
			continue
		}
		key, err := hex.DecodeString(fs[1])
		if err != nil {
			return nil, err
		}
		vols = append(vols, volume{uuid: fs[0], key: key, name: fs[2], mode: fs[3]})
	}
	return vols, sc.Err()
}

// openVolumes maps the volumes in order, lowest first.
func openVolumes(vols []volume) error {
	if len(vols) == 0 {
		return nil
	}
	if err := dm.EnsureControl("/sys"); err != nil {
		return err
	}
	sys := blockdev.Host()
	for _, v := range vols {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		dev, _, err := sys.Wait(ctx, blockdev.ByUUID(v.uuid), 100*time.Millisecond)
		cancel()
		if err != nil {
			return fmt.Errorf("LUKS %s: %w", v.uuid, err)
		}
		f, err := os.Open(dev.Path)
		if err != nil {
			return err
		}
		h, err := luks.Parse(f)
		f.Close()
		if err != nil {
			return err
		}
		size, err := devSize(dev.Name)
		if err != nil {
			return err
		}
		t, err := h.Table(size)
		if err != nil {
			return err
		}
		table := devmapper.CryptTable{
			Length:        t.Length * 512,
			BackendDevice: dev.Path,
			BackendOffset: t.Offset * 512,
			Encryption:    t.Cipher,
			IVTweak:       t.IVOffset,
			SectorSize:    uint64(t.SectorSize),
		}
		for _, p := range t.Params {
			if !strings.HasPrefix(p, "sector_size:") {
				table.Flags = append(table.Flags, p)
			}
		}
		if v.mode == "keyring" {
			desc := "cryptsetup:" + v.uuid + "-d0"
			if _, err := keys.Add("logon", desc, v.key, keys.UserKeyring); err != nil {
				return err
			}
			table.KeyID = keys.Reference(len(v.key), "logon", desc)
			if err := linkVolumeKey(v, v.key); err != nil {
				return err
			}
		} else {
			table.Key = v.key
		}
		dmUUID := fmt.Sprintf("CRYPT-LUKS%d-%s-%s", h.Version, strings.ReplaceAll(v.uuid, "-", ""), v.name)
		if err := devmapper.CreateAndLoad(v.name, dmUUID, 0, table); err != nil {
			return fmt.Errorf("map %s: %w", v.name, err)
		}
		say("opened %s (%s, %s)", v.name, v.uuid, v.mode)
	}
	return nil
}

// linkVolumeKey replaces the logon key kdump-cryptsetup:vk-<uuid> in @u.
func linkVolumeKey(v volume, key []byte) error {
	desc := keys.Description(v.uuid)
	if id, err := keys.Find("logon", desc); err == nil {
		keys.Invalidate(id)
	}
	_, err := keys.Add("logon", desc, key, keys.UserKeyring)
	return err
}

func devSize(name string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class/block", name, "size"))
	if err != nil {
		return 0, err
	}
	var n uint64
	_, err = fmt.Sscan(strings.TrimSpace(string(b)), &n)
	return n * 512, err
}

// wrongKeyCheck links a wrong logon key for the first keyring volume and
// expects ukdump load to refuse, naming the volume; then links the right one.
func wrongKeyCheck(vols []volume) {
	for _, v := range vols {
		if v.mode != "keyring" {
			continue
		}
		wrong := bytes.Repeat([]byte{0x5a}, len(v.key))
		linkVolumeKey(v, wrong)
		out, err := exec.Command("/usr/bin/ukdump", "load").CombinedOutput()
		ok := err != nil && bytes.Contains(out, []byte(v.name)) && bytes.Contains(out, []byte("does not match"))
		check("wrong-key", ok, out)
		linkVolumeKey(v, v.key)
		return
	}
}

// noKeyInImage checks that "ukdump mkinitrd -o FILE" wrote no key.
func noKeyInImage(vols []volume) {
	out, err := exec.Command("/usr/bin/ukdump", "mkinitrd", "-o", "/run/ukdump-check.img").CombinedOutput()
	if err != nil {
		check("mkinitrd-no-key", false, out)
		return
	}
	img, _ := os.ReadFile("/run/ukdump-check.img")
	for _, v := range vols {
		if bytes.Contains(img, v.key) || bytes.Contains(img, []byte(hex.EncodeToString(v.key))) {
			check("mkinitrd-no-key", false, []byte("key found in the image"))
			return
		}
	}
	check("mkinitrd-no-key", true, []byte(fmt.Sprintf("%d bytes, no key", len(img))))
	os.Remove("/run/ukdump-check.img")
}

// reloadWithoutKeys replaces the crash kernel by one loaded without any
// handed-over key, as a tool that knows nothing of LUKS would: the crash
// kernel then has no key for the volume it needs.
func reloadWithoutKeys(kernel string) error {
	if out, err := exec.Command("/usr/bin/ukdump", "mkinitrd", "-o", "/run/nokeys.img").CombinedOutput(); err != nil {
		return fmt.Errorf("mkinitrd: %v: %s", err, out)
	}
	c := keys.DefaultCrashDM()
	if err := c.Set(nil); err != nil {
		return err
	}
	k, err := os.Open(kernel)
	if err != nil {
		return err
	}
	defer k.Close()
	i, err := os.Open("/run/nokeys.img")
	if err != nil {
		return err
	}
	defer i.Close()
	cmdline, _ := os.ReadFile("/proc/cmdline")
	if _, err := kexec.LoadCrash(k, i, kexec.CrashCmdline(string(cmdline), nil)); err != nil {
		return err
	}
	say("reloaded the crash kernel without keys")
	return nil
}

func kernelPath() string {
	var uts unix.Utsname
	unix.Uname(&uts)
	return "/boot/vmlinuz-" + unix.ByteSliceToString(uts.Release[:])
}

// reloadReusingKeys drops the volume logon keys, as a key timeout would,
// checks that a plain load then fails, and runs ukdump reload, which sees
// the logon keys gone and makes the kernel reuse the keys it saved at the
// first load.
func reloadReusingKeys(vols []volume) error {
	for _, v := range vols {
		if id, err := keys.Find("logon", keys.Description(v.uuid)); err == nil {
			keys.Invalidate(id)
		}
	}
	out, err := exec.Command("/usr/bin/ukdump", "load").CombinedOutput()
	check("reload-without-keys-refused", err != nil && bytes.Contains(out, []byte("no key")), out)
	out, err = exec.Command("/usr/bin/ukdump", "reload").CombinedOutput()
	fmt.Printf("%s", out)
	if err != nil {
		return fmt.Errorf("ukdump reload: %w", err)
	}
	say("reloaded with the saved keys")
	return nil
}
