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
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/insmod"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/lvm"
	"github.com/ukdump/ukdump/pkg/scrub"
	"github.com/ukdump/ukdump/pkg/unlock"
)

func main() {
	// nr_cpus= (crash_cpus) decides how many CPUs are up.
	capture.TuneRuntime(runtime.NumCPU())
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

// dump opens the LUKS volumes under the target, activates the LVM volumes
// on them, writes the dump and removes the mappings again, so the final
// action finds the disks quiet.
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
	defer closing(log, &err, "close LUKS volumes", vols.Close)
	if err != nil {
		return &capture.StepError{Step: "unlock", Err: err}
	}
	kick() // unlocking waited for devices; the next wait starts afresh
	// The LVs lie on the LUKS volumes (LVM on LUKS), so they are removed
	// first: this defer runs before the one above.
	lvs, err := activateLVs(ctx, log, cfg, sys, kick)
	defer closing(log, &err, "remove LVM volumes", lvs.Close)
	if err != nil {
		return &capture.StepError{Step: "activate LVM", Err: err}
	}
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

// closing removes mappings at the end of dump; a failure is logged, and is
// dump's error when nothing failed before.
func closing(log *kmsg.Logger, err *error, step string, close func() error) {
	if cerr := close(); cerr != nil {
		log.Printf("warning: %s: %v", step, cerr)
		if *err == nil {
			*err = &capture.StepError{Step: step, Err: cerr}
		}
	}
}

// activateLVs activates the LVM volumes under the target, lowest first,
// each waiting up to the target timeout for its PVs, and kicks the
// watchdog after each. On error the mappings made so far are in the
// returned Mappings for the caller to remove.
func activateLVs(ctx context.Context, log *kmsg.Logger, cfg *config.Init, sys blockdev.Sys, kick func()) (*dm.Mappings, error) {
	m := &dm.Mappings{}
	if len(cfg.LVM) == 0 {
		return m, nil
	}
	if err := dm.EnsureControl(sys.SysDir); err != nil {
		return m, err
	}
	timeout := time.Duration(cfg.TargetTimeout)
	for _, v := range cfg.LVM {
		log.Printf("waiting up to %s for the PVs of LVM %s/%s", timeout, v.VG, v.LV)
		wctx, cancel := context.WithTimeout(ctx, timeout)
		name, err := lvm.Activate(wctx, v, lvm.Env{Log: log, Sys: sys, Create: dm.Create})
		cancel()
		if err != nil {
			return m, err
		}
		m.Add(name)
		kick()
	}
	return m, nil
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
		err := insmod.File(m, "")
		switch {
		case errors.Is(err, unix.ENODEV):
			// A driver for hardware this machine lacks, e.g. aesni_intel
			// on a CPU without AES-NI: the generic code serves instead.
			log.Printf("%v (not for this machine; skipped)", err)
		case err != nil:
			log.Printf("warning: %v", err)
		}
	}
	if len(mods) > 0 {
		log.Printf("loaded %d modules in %.2f s", len(mods), time.Since(start).Seconds())
	}
}
