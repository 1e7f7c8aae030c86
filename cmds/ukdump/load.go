package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader"
)

// The verbs of the first kernel: load, unload, status, mkinitrd.

func prepare(o loader.Options) (*loader.Plan, error) {
	o, err := loader.Defaults(o)
	if err != nil {
		return nil, err
	}
	return loader.Prepare(o)
}

// load runs loader.Load or loader.Reload and says what was loaded.
func load(o loader.Options, run func(*loader.Plan, io.Writer) (*loader.State, error), out io.Writer) error {
	p, err := prepare(o)
	if err != nil {
		return err
	}
	st, err := run(p, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "crash kernel loaded: %s (%s)\ntarget: %s, dumps in %s\ncmdline: %s\n", st.Release, st.Kernel, st.Target, st.Path, st.Cmdline)
	return nil
}

// estimate prints what the crash kernel needs and whether the reservation
// holds it.
func estimate(o loader.Options, out io.Writer) error {
	p, err := prepare(o)
	if err != nil {
		return err
	}
	ks, err := kexec.ReadStatus(p.Options.Sys.SysDir)
	if err != nil {
		return err
	}
	e, err := p.Estimate(ks.Reserved)
	if err != nil {
		return err
	}
	e.Print(out)
	if !ks.Supported {
		fmt.Fprintln(out, kexec.Unsupported)
	}
	if !ks.Supported || !e.Enough() {
		return exitStatus(exitFailure)
	}
	return nil
}

func mkinitrd(o loader.Options, output string, out io.Writer) error {
	p, err := prepare(o)
	if err != nil {
		return err
	}
	if err := loader.WriteInitramfs(p, output, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\n", output)
	return nil
}

func unload(stateFile string, forgetKeys bool, out io.Writer) error {
	err := kexec.UnloadCrash()
	if err == nil {
		err = loader.RemoveState(stateFile)
		fmt.Fprintln(out, "crash kernel unloaded")
	}
	if forgetKeys {
		if ferr := keys.DefaultSeal().Forget(); ferr != nil {
			err = errors.Join(err, ferr)
		} else {
			fmt.Fprintln(out, "sealed volume keys destroyed")
		}
	}
	return err
}
