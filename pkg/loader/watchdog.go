package loader

import (
	"os"
	"path/filepath"
)

// watchdogModules returns the driver modules of the machine's hardware
// watchdogs. A watchdog armed in the first kernel (systemd's
// RuntimeWatchdogSec) keeps running across the crash: the crash kernel must
// load its driver to feed it, or the machine resets in the middle of the
// dump; and kdumpinit arms it itself to bound a hung crash kernel.
func watchdogModules(sysDir string) []string {
	devs, _ := filepath.Glob(filepath.Join(sysDir, "class", "watchdog", "watchdog*"))
	var mods []string
	for _, d := range devs {
		target, err := os.Readlink(filepath.Join(d, "device", "driver", "module"))
		if err != nil {
			continue // built in, or a software watchdog without a device
		}
		mods = append(mods, filepath.Base(target))
	}
	return mods
}
