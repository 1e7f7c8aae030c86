// Command kdumpinit is PID 1 of the crash kernel: it loads the modules the
// dump target needs, writes the dump there and reboots (or powers off or
// halts). Every failure is logged with the step that failed and ends in the
// configured failure action: the machine must never hang in the crash kernel.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/capture"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/insmod"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/scrub"
	"github.com/ukdump/ukdump/pkg/unlock"
)

func main() {
	tuneRuntime()
	mountErr := mountPseudoFS()
	var kmsgFile *os.File
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		kmsgFile = f
	}
	log := kmsg.New(os.Stdout, kmsgFile, "kdumpinit")
	e := newEnder(log)
	log.Printf("ukdump crash kernel init starting")
	if mountErr != nil {
		e.fail("mount /proc, /sys, /dev", mountErr)
	}
	defer func() {
		if r := recover(); r != nil {
			e.fail("internal error", fmt.Errorf("%v\n%s", r, debug.Stack()))
		}
	}()

	// Before the configuration is read, a failure can only take the default action.
	cfg, err := config.ReadInit("/" + config.InitPath)
	if err != nil {
		e.fail("read configuration", err)
	}
	e.action.Store(cfg.FailureAction)
	// The watchdog starts before the modules load: a module whose init
	// hangs must end in the failure action too.
	w := newWatch(e, time.Duration(cfg.TargetTimeout))
	go w.run()
	loadModules(log, cfg.Modules)
	w.armHardware("/dev/watchdog")

	if err := dump(log, cfg, w.Kick); err != nil {
		var se *capture.StepError
		if errors.As(err, &se) {
			e.fail(se.Step, se.Err)
		}
		e.fail("dump", err)
	}
	e.end(cfg.FinalAction)
}

// dump opens the LUKS volumes under the target, writes the dump and closes
// the volumes again, so the final action finds the disks quiet.
func dump(log *kmsg.Logger, cfg *config.Init, kick func()) (err error) {
	ctx := context.Background()
	sys := blockdev.Host()
	// Unlocking keeps a copy of each key it checks, for the dump to be
	// scrubbed of (unless scrub_keys no); capture wipes them once the
	// vmcore is written, this on every other way out.
	var kept *scrub.Keys
	if len(cfg.Volumes) > 0 && !cfg.Dump.KeepKeys {
		kept = &scrub.Keys{}
		defer kept.Wipe()
	}
	vols, err := unlock.Open(ctx, cfg.Volumes, time.Duration(cfg.TargetTimeout), unlock.Env{
		Log: log, Sys: sys, CrashDM: keys.DefaultCrashDM(), Keep: kept,
	})
	defer func() {
		if cerr := vols.Close(); cerr != nil {
			log.Printf("warning: closing LUKS volumes: %v", cerr)
			if err == nil {
				err = &capture.StepError{Step: "close LUKS volumes", Err: cerr}
			}
		}
	}()
	if err != nil {
		return &capture.StepError{Step: "unlock", Err: err}
	}
	kick() // unlocking waited for devices; the target wait starts afresh
	res, err := capture.Run(ctx, cfg, capture.Env{
		Log:      log,
		Sys:      sys,
		Vmcore:   "/proc/vmcore",
		MountDir: "/mnt/target",
		Now:      time.Now,
		Kick:     kick,
		Mount:    capture.Mount,
		Keys:     kept,
	})
	if err != nil {
		return err
	}
	log.Printf("saved %s (%d MiB, %.1f MB/s)", res.Dir, res.Bytes>>20, float64(res.Bytes)/res.Took.Seconds()/1e6)
	return nil
}

// tuneRuntime fits the Go runtime to a crash kernel that runs on one CPU
// with a few tens of MiB to spare: collect early and often rather than let
// the heap grow, since the dump itself streams through a fixed buffer.
func tuneRuntime() {
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(20)
	debug.SetMemoryLimit(24 << 20)
}

func mountPseudoFS() error {
	var errs []error
	for _, m := range []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		// EBUSY: the kernel mounted it already (CONFIG_DEVTMPFS_MOUNT).
		if err := unix.Mount(m.src, m.dir, m.fs, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s: %w", m.dir, err))
		}
	}
	return errors.Join(errs...)
}

// loadModules loads the modules in the order the generator resolved. A
// module that fails is logged and passed over: if the target needed it, the
// wait for the target says so soon after, with the reason above it.
func loadModules(log *kmsg.Logger, mods []string) {
	start := time.Now()
	for _, m := range mods {
		if err := insmod.File(m, ""); err != nil {
			log.Printf("warning: %v", err)
		}
	}
	if len(mods) > 0 {
		log.Printf("loaded %d modules in %.2f s", len(mods), time.Since(start).Seconds())
	}
}
