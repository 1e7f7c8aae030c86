package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/crashtest"
	"github.com/ukdump/ukdump/pkg/crypttab"
	"github.com/ukdump/ukdump/pkg/loader"
	"github.com/ukdump/ukdump/pkg/status"
)

// The verbs that look after an installation: status, test.

// showStatus prints whether a crash now would give a dump; with
// loadedKernel only the release of the loaded crash kernel, for the kernel
// package hooks. Either fails with exit 1 and no message of its own when
// the answer is no.
func showStatus(o loader.Options, loadedKernel bool, out io.Writer) error {
	o, err := loader.Defaults(o)
	if err != nil {
		return err
	}
	if loadedKernel {
		rel, ok := status.LoadedRelease(o.Sys.SysDir, o.StateFile)
		if !ok {
			return exitStatus(exitFailure)
		}
		fmt.Fprintln(out, rel)
		return nil
	}
	r := status.Gather(o, status.Env{Crypttab: crypttab.DefaultFile, Openers: crypttab.Detect("/", runProgram)})
	r.Print(out)
	if !r.Ready() {
		return exitStatus(exitFailure)
	}
	return nil
}

// crashTest crashes the machine to test kdump, once confirmed.
func crashTest(stateFile string, yes bool, out io.Writer) error {
	return crashtest.Run(crashtest.Env{
		ProcDir:   "/proc",
		SysDir:    "/sys",
		StateFile: stateFile,
		In:        os.Stdin,
		Terminal:  isTerminal(int(os.Stdin.Fd())),
		Out:       out,
		Sync:      unix.Sync,
	}, yes)
}
