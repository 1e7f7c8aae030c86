// Package crashtest crashes the machine on purpose, to test kdump end to
// end: it says what will happen, asks for confirmation, syncs the
// filesystems and triggers a panic through /proc/sysrq-trigger.
package crashtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/loader"
)

// Env is what the test touches of the system. Tests point ProcDir at a
// fake tree, where writing the trigger crashes nothing.
type Env struct {
	// ProcDir is where proc is mounted (/proc), SysDir sysfs (/sys).
	ProcDir, SysDir string
	// StateFile is the record of the last ukdump load.
	StateFile string
	// In is where the confirmation is read from; Terminal says whether it
	// is a terminal, where a person can answer.
	In       io.Reader
	Terminal bool
	Out      io.Writer
	// Sync flushes the filesystems before the crash (unix.Sync).
	Sync func()
}

// Confirmation is what a person types to crash the machine.
const Confirmation = "yes"

// ErrNotConfirmed means the person did not type Confirmation.
var ErrNotConfirmed = errors.New("not confirmed: nothing done")

// Run crashes the machine once a crash kernel is loaded and the crash is
// confirmed: by typing Confirmation on a terminal, or by yes (--yes).
// Without a terminal and without yes it refuses. In the real system it
// does not return when it succeeds.
//
// The kernel.sysrq sysctl is left alone: it masks only the keyboard, and
// root's writes to /proc/sysrq-trigger always work
// (Documentation/admin-guide/sysrq.rst).
func Run(env Env, yes bool) error {
	ks, err := kexec.ReadStatus(env.SysDir)
	switch {
	case err != nil:
		return err
	case !ks.Supported:
		return errors.New(kexec.Unsupported + ": a crash would only stop the machine")
	case !ks.Loaded:
		return errors.New("no crash kernel loaded: run ukdump load (or systemctl start ukdump)")
	}
	trigger := filepath.Join(env.ProcDir, "sysrq-trigger")
	if _, err := os.Stat(trigger); err != nil {
		return fmt.Errorf("crashtest: this kernel has no %s (CONFIG_MAGIC_SYSRQ): %w", trigger, err)
	}
	st, err := loader.ReadState(env.StateFile)
	if err != nil {
		return err
	}
	describe(env.Out, ks, st)
	switch {
	case yes:
	case !env.Terminal:
		return errors.New("standard input is not a terminal, where the crash could be confirmed: run ukdump test --yes to crash without asking")
	default:
		fmt.Fprintf(env.Out, "Type %q to crash this machine now: ", Confirmation)
		line, err := bufio.NewReader(env.In).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("crashtest: reading the confirmation: %w", err)
		}
		if strings.TrimSpace(line) != Confirmation {
			return ErrNotConfirmed
		}
	}
	fmt.Fprintln(env.Out, "syncing filesystems, then crashing")
	env.Sync()
	return crash(trigger)
}

// describe says what is about to happen.
func describe(w io.Writer, ks kexec.Status, st *loader.State) {
	fmt.Fprintln(w, "ukdump test crashes this machine NOW, on purpose (sysrq c, a kernel panic):")
	fmt.Fprintln(w, "  - every program stops at once; unsaved work is lost (filesystems are synced first)")
	if st == nil {
		fmt.Fprintf(w, "  - a crash kernel is loaded in the %d MiB reserved for it, but not by ukdump load: what it does is not known\n", ks.Reserved>>20)
		return
	}
	fmt.Fprintf(w, "  - the crash kernel %s (loaded %s) boots in the %d MiB reserved for it\n",
		st.Release, st.LoadedAt.Format("2006-01-02 15:04:05 UTC"), ks.Reserved>>20)
	fmt.Fprintf(w, "  - it writes a dump to %s/<host>-<date>/ on %s\n", strings.TrimSuffix(st.Path, "/"), st.Target)
	fmt.Fprintf(w, "  - then it takes final_action %s (failure_action %s if the dump fails)\n", st.FinalAction, st.FailureAction)
}

// crash writes "c" to the sysrq trigger.
func crash(trigger string) error {
	f, err := os.OpenFile(trigger, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("crashtest: %w", err)
	}
	_, err = f.Write([]byte("c"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("crashtest: writing c to %s: %w", trigger, err)
	}
	return nil
}
