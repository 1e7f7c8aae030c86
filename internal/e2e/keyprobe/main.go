// Command keyprobe is test-only code: it tries every way a process has to
// read the volume keys of the open LUKS volumes of the machine it runs on,
// and says which gave the key (a key read is checked against the LUKS
// header digest, and never printed). The real-system tests run it with
// its capabilities dropped (setpriv), in root's session keyring and in a
// private one that links root's user keyring, and as the control with
// CAP_SYS_ADMIN (and CAP_SETUID for -unseal).
//
//	keyprobe [-new-session] [-link-user] [-unseal]
//
// Ways tried, for each dm-crypt mapping of a LUKS volume:
//
//	keyring  a user or logon key kdump-cryptsetup:vk-<uuid> or
//	         cryptsetup:<uuid> found by search from this process's keyrings
//	proc     every key /proc/keys shows whose description names the UUID,
//	         read by its serial
//	sealed   (-unseal) a key ukdump sealed, read ukdump's way
//	table    the key in the mapping's dm-crypt table (DM_TABLE_STATUS)
//
// Output: "KEYPROBE <mapping> <uuid> <way>: <result>" per way, then
// "KEYPROBE readable=<n>", the number of ways that gave a key.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/luks"
)

func main() {
	newSession := flag.Bool("new-session", false, "join a new anonymous session keyring first")
	linkUser := flag.Bool("link-user", false, "link root's user keyring (@u) into the session keyring first, as its owner may")
	unseal := flag.Bool("unseal", false, "also try ukdump's way of reading a sealed key")
	flag.Parse()
	// A session keyring belongs to the thread that joins it: every keyring
	// call here runs on this one.
	runtime.LockOSThread()
	if *newSession {
		if _, err := unix.KeyctlInt(unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0); err != nil {
			fmt.Printf("KEYPROBE join session keyring: %v\n", err)
		}
	}
	if *linkUser {
		if _, err := unix.KeyctlInt(unix.KEYCTL_LINK, keys.UserKeyring, keys.SessionKeyring, 0, 0); err != nil {
			fmt.Printf("KEYPROBE link @u into @s: %v\n", err)
		}
	}
	vols, err := volumes("/sys")
	if err != nil {
		fmt.Printf("KEYPROBE FAILED: %v\n", err)
		os.Exit(1)
	}
	readable := 0
	for _, v := range vols {
		say := func(way, result string) { fmt.Printf("KEYPROBE %s %s %s: %s\n", v.name, v.h.UUID, way, result) }
		for _, try := range []struct {
			way  string
			read func() ([]byte, error)
		}{
			{"keyring", v.keyring},
			{"proc", v.proc},
			{"sealed", func() ([]byte, error) {
				if !*unseal {
					return nil, errSkipped
				}
				id, err := keys.DefaultSeal().FindSealed(keys.Description(v.h.UUID))
				if err != nil {
					return nil, err
				}
				return keys.DefaultSeal().ReadSealed(id)
			}},
			{"table", func() ([]byte, error) { b, _, err := dm.TableKey(v.name); return b, err }},
		} {
			b, err := try.read()
			switch {
			case err == errSkipped:
				continue
			case err != nil:
				say(try.way, "no key: "+err.Error())
			case v.h.VerifyKey(b) != nil:
				say(try.way, "read, but not the volume key")
			default:
				say(try.way, "READ the volume key (it matches the LUKS digest)")
				readable++
			}
			keys.Wipe(b)
		}
	}
	fmt.Printf("KEYPROBE readable=%d volumes=%d\n", readable, len(vols))
}

var errSkipped = fmt.Errorf("skipped")

type volume struct {
	name string
	h    *luks.Header
}

// volumes finds the dm-crypt mappings of LUKS volumes: their dm UUID is
// CRYPT-LUKS<n>-<uuid without dashes>-<name>, their slave holds the header.
func volumes(sys string) ([]volume, error) {
	dirs, err := filepath.Glob(filepath.Join(sys, "block", "dm-*"))
	if err != nil {
		return nil, err
	}
	var vols []volume
	for _, d := range dirs {
		uuid, _ := os.ReadFile(filepath.Join(d, "dm", "uuid"))
		if !strings.HasPrefix(string(uuid), "CRYPT-LUKS") {
			continue
		}
		name, _ := os.ReadFile(filepath.Join(d, "dm", "name"))
		slaves, _ := os.ReadDir(filepath.Join(d, "slaves"))
		if len(slaves) != 1 {
			continue
		}
		h, err := luks.ReadFile("/dev/" + slaves[0].Name())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", slaves[0].Name(), err)
		}
		vols = append(vols, volume{name: strings.TrimSpace(string(name)), h: h})
	}
	return vols, nil
}

// keyring searches this process's keyrings for the descriptions ukdump
// and cryptsetup use, either type; a logon key is found but never read.
func (v volume) keyring() ([]byte, error) {
	var errs []string
	for _, desc := range []string{keys.Description(v.h.UUID), keys.LegacyDescription(v.h.UUID)} {
		for _, typ := range []string{"user", "logon"} {
			id, err := keys.Find(typ, desc)
			if err != nil {
				continue
			}
			b, err := keys.Read(id)
			if err == nil {
				return b, nil
			}
			errs = append(errs, fmt.Sprintf("%s key %s found, read: %v", typ, desc, err))
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("none found by search")
	}
	return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
}

// proc reads, by serial, every key /proc/keys lists for the UUID.
func (v volume) proc() ([]byte, error) {
	b, err := os.ReadFile("/proc/keys")
	if err != nil {
		return nil, err
	}
	var errs []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || !strings.Contains(l, v.h.UUID) {
			continue
		}
		id, err := strconv.ParseInt(f[0], 16, 32)
		if err != nil {
			continue
		}
		key, err := keys.Read(int(id))
		if err == nil && v.h.VerifyKey(key) == nil {
			return key, nil
		}
		keys.Wipe(key)
		errs = append(errs, fmt.Sprintf("%s %s: %v", f[7], f[8], err))
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no key listed")
	}
	return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
}
