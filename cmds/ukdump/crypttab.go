package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"github.com/ukdump/ukdump/pkg/crypttab"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader"
)

// The verb that makes the next boots leave the volume keys where load
// finds them: setup-crypttab.

// crypttabEnv is what setup-crypttab touches besides the plan.
type crypttabEnv struct {
	// File is the crypttab; its backup is File + backupSuffix.
	File    string
	Openers crypttab.Openers
	// In is where the confirmation is read from; Terminal says whether it
	// is a terminal, where a person can answer.
	In       io.Reader
	Terminal bool
	Out      io.Writer
}

// backupSuffix names the copy of crypttab as it was before the last edit.
const backupSuffix = ".ukdump-bak"

// setupCrypttab resolves the target as load does and edits crypttab.
func setupCrypttab(o loader.Options, file string, yes bool, out io.Writer) error {
	p, err := prepare(o)
	if err != nil {
		return err
	}
	return editCrypttab(p, crypttabEnv{
		File:     file,
		Openers:  crypttab.Detect("/", runProgram),
		In:       os.Stdin,
		Terminal: isTerminal(int(os.Stdin.Fd())),
		Out:      out,
	}, yes)
}

// runProgram runs a program for its standard output.
func runProgram(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).Output()
}

// editCrypttab adds link-volume-key= to the crypttab line of each LUKS2
// volume under the target, shows the change and writes it once confirmed.
// The key type follows the transport of the running kernel: the kernel
// transport has the kernel copy a logon key by its name; the initrd
// transport needs the key bytes, which only a user key gives back.
func editCrypttab(p *loader.Plan, env crypttabEnv, yes bool) error {
	out := env.Out
	if len(p.Volumes) == 0 {
		fmt.Fprintf(out, "no LUKS volume under the dump target (%s): nothing to do\n", p.Target)
		return nil
	}
	keyType := crypttab.KeyType(p.Transport)
	old, err := os.ReadFile(env.File)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("crypttab: %w", err)
	}
	tab := crypttab.Parse(old)
	edited := tab.Clone()
	initramfs, err := crypttab.InitramfsDevices(p.Options.Sys, p.Options.ProcDir)
	if err != nil {
		fmt.Fprintf(out, "warning: which volumes the initramfs opens: %v\n", err)
	}
	fmt.Fprintf(out, "LUKS volumes under the dump target (key transport %s, so %s keys):\n", p.Transport, keyType)
	for _, v := range p.Volumes {
		say := func(format string, args ...any) {
			fmt.Fprintf(out, "  %s (LUKS %s): "+format+"\n", append([]any{v.Name, v.UUID}, args...)...)
		}
		if v.Header.Version == 1 {
			say("LUKS1: cryptsetup keeps its key in the live dm-crypt table, where load reads it; nothing to add")
			continue
		}
		e, ok := edited.Find(p.Options.Sys, crypttab.Volume{Name: v.Name, UUID: v.UUID, Device: v.Backing})
		if !ok {
			say("no line in %s: it is opened some other way, which link-volume-key= does not reach; ukdump load needs its passphrase (--key-file)", env.File)
			continue
		}
		value := crypttab.LinkVolumeKeyValue(keyType, keys.Description(v.UUID))
		changed, err := edited.SetOption(e.Line, crypttab.LinkVolumeKey, value)
		if err != nil {
			return err
		}
		if changed {
			say("line %d (%s): link-volume-key=%s", e.Line+1, e.Name, value)
		} else {
			say("line %d (%s) already has link-volume-key=%s", e.Line+1, e.Name, value)
		}
		if env.Openers.InInitramfs(v.Mapped, &e, initramfs) {
			say("Debian's cryptroot opens it in the initramfs and ignores this option (update-initramfs warns about it): the ukdump initramfs hook is what leaves its key for ukdump")
		}
	}
	diff := crypttab.Diff(env.File, tab, edited)
	if diff == "" {
		fmt.Fprintf(out, "%s needs no change\n", env.File)
		crypttabNotes(out, env.Openers, keyType)
		return nil
	}
	fmt.Fprintf(out, "\n%s\n", diff)
	if err := confirm(env, yes); err != nil {
		return err
	}
	if err := crypttab.Write(env.File, old, edited.Bytes(), env.File+backupSuffix); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (as it was before: %s%s)\n", env.File, env.File, backupSuffix)
	crypttabNotes(out, env.Openers, keyType)
	return nil
}

// removeCrypttab takes off every line the link-volume-key= options that
// setup-crypttab adds (a key named kdump-cryptsetup:vk-…, of either type),
// for the package's removal: without ukdump nothing seals those keys, and
// they would stay readable by root's processes for every uptime. Other
// link-volume-key= values are the administrator's and stay.
func removeCrypttab(file string, yes bool, out io.Writer) error {
	old, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(out, "%s does not exist: nothing to do\n", file)
		return nil
	}
	if err != nil {
		return fmt.Errorf("crypttab: %w", err)
	}
	tab := crypttab.Parse(old)
	edited := tab.Clone()
	ours := func(v string) bool {
		_, desc, ok := strings.Cut(v, "::%")
		_, name, _ := strings.Cut(desc, ":")
		return ok && strings.HasPrefix(name, keys.Description(""))
	}
	for _, e := range edited.Entries() {
		if _, err := edited.RemoveOption(e.Line, crypttab.LinkVolumeKey, ours); err != nil {
			return err
		}
	}
	diff := crypttab.Diff(file, tab, edited)
	if diff == "" {
		fmt.Fprintf(out, "%s has no link-volume-key= of ukdump's: nothing to do\n", file)
		return nil
	}
	fmt.Fprintf(out, "%s\n", diff)
	env := crypttabEnv{File: file, In: os.Stdin, Terminal: isTerminal(int(os.Stdin.Fd())), Out: out}
	if err := confirm(env, yes); err != nil {
		return err
	}
	if err := crypttab.Write(file, old, edited.Bytes(), file+backupSuffix); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (as it was before: %s%s); systemd-cryptsetup no longer leaves those keys from the next boot on\n", file, file, backupSuffix)
	return nil
}

// confirm asks on a terminal; without one only yes applies the change.
func confirm(env crypttabEnv, yes bool) error {
	switch {
	case yes:
		return nil
	case !env.Terminal:
		return errors.New("standard input is not a terminal, where the change could be confirmed: nothing changed; run ukdump setup-crypttab --yes to apply it")
	}
	fmt.Fprint(env.Out, "Apply? [y/N] ")
	line, err := bufio.NewReader(env.In).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not applied: nothing changed")
}

// crypttabNotes say when the option works, and what it exposes.
func crypttabNotes(out io.Writer, o crypttab.Openers, keyType string) {
	fmt.Fprintln(out, "The option takes effect when systemd-cryptsetup next opens the volumes: at the next boot (or after closing and opening them); the load at boot then finds the keys.")
	switch ok, known := o.LinkVolumeKey(); {
	case !known && o.Systemd.Known():
		// systemd-cryptsetup needs only the library, so a system without
		// the cryptsetup program (Debian 13 with systemd-cryptsetup) is
		// the common case, not a reason to alarm.
		fmt.Fprintf(out, "note: no cryptsetup program here tells libcryptsetup's version; systemd %d honours the option with libcryptsetup 2.7 or later, as distributions build it\n", o.Systemd.Major)
	case !known:
		fmt.Fprintf(out, "warning: cannot tell whether systemd-cryptsetup here honours it: %s\n", o.Requirement())
	case !ok:
		fmt.Fprintf(out, "warning: systemd-cryptsetup here ignores it (%s): until an upgrade, ukdump load needs the passphrase of the volumes it opens (--key-file)\n", o.Requirement())
		if o.Cryptroot {
			fmt.Fprintln(out, "The volumes Debian's cryptroot opens in the initramfs get their keys from the ukdump initramfs hook.")
		}
	}
	if keyType == "logon" {
		fmt.Fprintln(out, "Logon keys serve the kernel transport of this kernel (CONFIG_CRASH_DM_CRYPT); after booting a kernel without it, run ukdump setup-crypttab again: the initrd transport needs user keys.")
	} else {
		fmt.Fprintln(out, "A user key in root's user keyring can be read by root's processes, as the key in a live dm-crypt table can; it lives in RAM only.")
	}
}
