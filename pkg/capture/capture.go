// Package capture is the dump job of the crash kernel: wait for the target
// filesystem, mount it, write the dump into a new directory, unmount.
package capture

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dumpdir"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/progress"
)

// Env is what the job touches of the crash kernel's system.
type Env struct {
	Log *kmsg.Logger
	Sys blockdev.Sys
	// Vmcore is the dead kernel's memory, /proc/vmcore.
	Vmcore string
	// MountDir is where the target is mounted.
	MountDir string
	// Now names the dump directory.
	Now func() time.Time
	// Kick is called whenever the dump makes progress, for a stall watchdog.
	Kick func()
}

// StepError names the step of the job that failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: name, Err: err}
}

// Result describes a written dump.
type Result struct {
	// Dir is the dump directory as seen on the target filesystem.
	Dir   string
	Bytes int64
	Took  time.Duration
}

// Run writes one dump as cfg says. The target is unmounted before Run
// returns, whatever happened.
func Run(ctx context.Context, cfg *config.Init, env Env) (res *Result, err error) {
	t := cfg.Target
	spec := ""
	if t.Spec != "UUID="+t.UUID {
		spec = " (" + t.Spec + " in ukdump.conf)"
	}
	env.Log.Printf("waiting up to %s for the target %s UUID=%s%s", time.Duration(cfg.TargetTimeout), t.FSType, t.UUID, spec)
	wctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.TargetTimeout))
	defer cancel()
	dev, _, err := env.Sys.Wait(wctx, blockdev.ByUUID(t.UUID), 200*time.Millisecond)
	if err != nil {
		return nil, step("wait for target", fmt.Errorf("%s UUID=%s did not appear within %s: %w",
			t.FSType, t.UUID, time.Duration(cfg.TargetTimeout), err))
	}
	env.Log.Printf("found target %s on %s", t.UUID, dev.Path)

	if err := os.MkdirAll(env.MountDir, 0o755); err != nil {
		return nil, step("mount target", err)
	}
	mp, err := mount.Mount(dev.Path, env.MountDir, t.FSType, t.Options, 0)
	if err != nil {
		return nil, step("mount target", fmt.Errorf("%s as %s: %w", dev.Path, t.FSType, err))
	}
	env.Log.Printf("mounted %s on %s", dev.Path, env.MountDir)
	defer func() {
		unix.Sync()
		if uerr := mp.Unmount(0); uerr != nil && err == nil {
			err = step("unmount target", uerr)
		} else if uerr == nil {
			env.Log.Printf("unmounted %s", env.MountDir)
		}
	}()

	base := filepath.Join(env.MountDir, cfg.Path)
	dir, err := dumpdir.Create(base, cfg.Hostname, env.Now())
	if err != nil {
		return nil, step("create dump directory", err)
	}
	rel := filepath.Join(cfg.Path, filepath.Base(dir))
	env.Log.Printf("writing dump to %s", rel)

	n, took, err := copyVmcore(env, dir)
	if err != nil {
		return nil, step("write vmcore", err)
	}
	env.Log.Printf("dump complete: %s/vmcore, %d MiB in %.1f s", rel, n>>20, took.Seconds())
	return &Result{Dir: rel, Bytes: n, Took: took}, nil
}

// copyVmcore copies the ELF core as it is. Filtering and compression come
// with the core collector; until then the dump is as large as memory.
func copyVmcore(env Env, dir string) (int64, time.Duration, error) {
	in, err := os.Open(env.Vmcore)
	if err != nil {
		return 0, 0, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return 0, 0, err
	}
	size := st.Size()
	warnSpace(env, dir, size)
	meter := progress.NewMeter(size, 2*time.Second, func(s progress.Stats) {
		env.Log.Progressf("vmcore %s", s)
		if env.Kick != nil {
			env.Kick()
		}
	})
	err = dumpdir.WriteFile(dir, "vmcore", func(w io.Writer) error {
		buf := make([]byte, 1<<20)
		_, err := io.CopyBuffer(io.MultiWriter(w, meter), onlyReader{in}, buf)
		return err
	})
	stats := meter.Finish()
	return stats.Done, stats.Elapsed, err
}

// onlyReader hides WriterTo/ReaderFrom so that io.CopyBuffer goes through
// the meter for every buffer instead of handing the copy to the kernel.
type onlyReader struct{ io.Reader }

// warnSpace says early when the target cannot hold the dump, so that the
// administrator reading the console knows why it will be incomplete.
func warnSpace(env Env, dir string, need int64) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < need {
		env.Log.Printf("warning: target has %d MiB free, the dump needs up to %d MiB", free>>20, need>>20)
	}
}
