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
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/capture"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/insmod"
	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/unlock"
)

// stallTimeout ends a dump that makes no progress at all, e.g. a disk that
// stopped answering. A slow dump that keeps moving is never cut short.
const stallTimeout = 5 * time.Minute

func main() {
	tuneRuntime()
	mountErr := mountPseudoFS()
	var kmsgFile *os.File
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		kmsgFile = f
	}
	log := kmsg.New(os.Stdout, kmsgFile, "kdumpinit")
	log.Printf("ukdump crash kernel init starting")
	if mountErr != nil {
		log.Printf("FAILED at mount /proc, /sys, /dev: %v", mountErr)
		finish(log, config.Reboot)
	}

	// Before the configuration is read, a failure can only take the default action.
	action := config.Reboot
	defer func() {
		if r := recover(); r != nil {
			log.Printf("FAILED: internal error: %v\n%s", r, debug.Stack())
			finish(log, action)
		}
	}()

	cfg, err := config.ReadInit("/" + config.InitPath)
	if err != nil {
		log.Printf("FAILED at read configuration: %v", err)
		finish(log, action)
	}
	action = cfg.FailureAction
	loadModules(log, cfg.Modules)

	var lastKick atomic.Int64
	kick := func() { lastKick.Store(time.Now().UnixNano()) }
	kick()
	go watchdog(log, &lastKick, cfg.TargetTimeout, action)

	if err := dump(log, cfg, kick); err != nil {
		log.Printf("FAILED at %v", err)
		finish(log, cfg.FailureAction)
	}
	finish(log, cfg.FinalAction)
}

// dump opens the LUKS volumes under the target, writes the dump and closes
// the volumes again, so the final action finds the disks quiet.
func dump(log *kmsg.Logger, cfg *config.Init, kick func()) (err error) {
	ctx := context.Background()
	sys := blockdev.Host()
	vols, err := unlock.Open(ctx, cfg.Volumes, time.Duration(cfg.TargetTimeout), unlock.Env{
		Log: log, Sys: sys, CrashDM: keys.DefaultCrashDM(),
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

// watchdog takes the failure action when the dump stops making progress.
// It allows the target wait on top of the stall timeout, since waiting for
// the device is not progress but has its own limit.
func watchdog(log *kmsg.Logger, last *atomic.Int64, wait config.Duration, action config.Action) {
	limit := stallTimeout + time.Duration(wait)
	for {
		time.Sleep(10 * time.Second)
		if idle := time.Since(time.Unix(0, last.Load())); idle > limit {
			log.Printf("FAILED: no progress for %s", idle.Round(time.Second))
			finish(log, action)
		}
	}
}

// finish logs the peak memory, then ends the crash kernel. It never returns.
func finish(log *kmsg.Logger, action config.Action) {
	if hwm := peakMemory(); hwm != "" {
		log.Printf("peak memory (VmHWM) %s", hwm)
	}
	cmd := map[config.Action]int{
		config.Reboot:   unix.LINUX_REBOOT_CMD_RESTART,
		config.Poweroff: unix.LINUX_REBOOT_CMD_POWER_OFF,
		config.Halt:     unix.LINUX_REBOOT_CMD_HALT,
	}[action]
	if cmd == 0 {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	log.Printf("%s", action)
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		log.Printf("reboot(%s): %v", action, err)
	}
	// Unreachable unless reboot failed: exiting PID 1 panics the kernel,
	// and the crash kernel's panic= reboots it.
	os.Exit(1)
}

func peakMemory() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
