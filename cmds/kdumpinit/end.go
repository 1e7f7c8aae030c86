package main

import (
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/kmsg"
)

// Bounds of the way out. Whatever blocks (a console that stopped taking
// output, a sync that waits on a disk that stopped answering), the machine
// is reset within endDeadline of the decision to end.
const (
	syncTimeout = 20 * time.Second
	endDeadline = 30 * time.Second
)

// ender takes the crash kernel's last action. Its first step is always to
// arm a deadman that resets the machine without logging or syncing, so
// nothing after it (log lines, sync, the reboot call itself) can keep the
// machine from coming back.
type ender struct {
	log    *kmsg.Logger
	action atomic.Value // config.Action taken on failure
	ending atomic.Bool
}

func newEnder(log *kmsg.Logger) *ender {
	e := &ender{log: log}
	e.action.Store(config.Reboot)
	return e
}

// fail logs the failed step and takes the failure action. It never returns.
func (e *ender) fail(step string, err error) {
	action := e.action.Load().(config.Action)
	e.arm(action)
	e.log.Printf("FAILED at %s: %v", step, err)
	e.end(action)
}

// end syncs (with a deadline) and takes action. It never returns.
func (e *ender) end(action config.Action) {
	cmd := rebootCmd(action)
	e.arm(action)
	if hwm := peakMemory(); hwm != "" {
		e.log.Printf("peak memory (VmHWM) %s", hwm)
	}
	e.log.Printf("%s", action)
	if !syncWithin(syncTimeout) {
		e.log.Printf("sync did not finish within %s; going on without it", syncTimeout)
	}
	if err := unix.Reboot(cmd); err != nil {
		e.log.Printf("reboot(%s): %v", action, err)
	}
	// Unreachable unless reboot failed: exiting PID 1 panics the kernel,
	// and the crash kernel's panic= reboots it.
	os.Exit(1)
}

// arm starts the deadman once; it also tells the watchdog feeder to stop,
// so a hardware watchdog resets the machine if even the deadman's reboot
// hangs.
func (e *ender) arm(action config.Action) {
	if e.ending.Swap(true) {
		return
	}
	cmd := rebootCmd(action)
	go func() {
		time.Sleep(endDeadline)
		unix.Reboot(cmd) // nothing left to report to: the reboot is the report
		os.Exit(1)
	}()
}

// syncWithin flushes the filesystems, giving up after limit: sync(2)
// blocks for as long as a dead disk does not answer.
func syncWithin(limit time.Duration) bool {
	done := make(chan struct{})
	go func() {
		unix.Sync()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

func rebootCmd(a config.Action) int {
	switch a {
	case config.Poweroff:
		return unix.LINUX_REBOOT_CMD_POWER_OFF
	case config.Halt:
		return unix.LINUX_REBOOT_CMD_HALT
	}
	return unix.LINUX_REBOOT_CMD_RESTART
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
