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
	"github.com/ukdump/ukdump/pkg/loader"
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

// concurrentReloads runs two "ukdump reload" at once, as an administrator's
// beside a kernel hook's: one waits for the other (ukdump's lock), both
// succeed, and what is left is a loaded crash kernel whose state file
// describes the last of them and names, for each volume, the key items the
// kernel has.
func concurrentReloads(vols []volume) {
	type result struct {
		out []byte
		err error
	}
	results := make(chan result, 2)
	before := time.Now()
	reload := func() *exec.Cmd {
		cmd := exec.Command("/usr/bin/ukdump", "reload")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			results <- result{nil, err}
			return nil
		}
		go func() {
			err := cmd.Wait()
			results <- result{out.Bytes(), err}
		}()
		return cmd
	}
	// The second starts once the first holds the lock, so that the two
	// overlap for sure.
	if first := reload(); first != nil {
		holder := fmt.Sprintf("%d reload ", first.Process.Pid)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile("/run/ukdump/lock"); strings.HasPrefix(string(b), holder) {
				break
			}
		}
	}
	reload()
	var outs []byte
	ok := true
	waited := false
	for range 2 {
		r := <-results
		outs = append(outs, r.out...)
		ok = ok && r.err == nil
		waited = waited || bytes.Contains(r.out, []byte("waiting for ukdump reload (pid "))
	}
	loaded, _ := os.ReadFile("/sys/kernel/kexec_crash_loaded")
	st, err := loader.ReadState(loader.DefaultStateFile)
	switch {
	case !ok:
		check("concurrent-reloads", false, append([]byte("a reload failed:\n"), outs...))
		return
	case strings.TrimSpace(string(loaded)) != "1":
		check("concurrent-reloads", false, append([]byte("no crash kernel loaded after them:\n"), outs...))
		return
	case err != nil || st == nil || st.LoadedAt.Before(before):
		check("concurrent-reloads", false, []byte(fmt.Sprintf("state file %+v, %v: not from these reloads", st, err)))
		return
	case !waited:
		// The second started while the first held the lock.
		check("concurrent-reloads", false, append([]byte("the second reload did not wait for the first:\n"), outs...))
		return
	}
	c := keys.DefaultCrashDM()
	items, _ := c.Items()
	if len(st.Volumes) != len(vols) || len(items) != len(vols) {
		check("concurrent-reloads", false, []byte(fmt.Sprintf("state volumes %+v, key items %v, want %d of each", st.Volumes, items, len(vols))))
		return
	}
	for _, v := range vols {
		d, err := os.ReadFile(filepath.Join(c.Dir, v.uuid, "description"))
		found := false
		for _, sv := range st.Volumes {
			found = found || sv.UUID == v.uuid
		}
		if err != nil || strings.TrimSpace(string(d)) != keys.Description(v.uuid) || !found {
			check("concurrent-reloads", false, []byte(fmt.Sprintf("volume %s: key item %q (%v), in the state file: %v", v.uuid, d, err, found)))
			return
		}
	}
	check("concurrent-reloads", true, []byte(fmt.Sprintf("both succeeded, the second after waiting for the first; loaded, state of %s, %d key item(s)",
		st.LoadedAt.Format(time.TimeOnly), len(items))))
}
