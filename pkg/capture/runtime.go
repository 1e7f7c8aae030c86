package capture

import (
	"runtime"
	"runtime/debug"
)

// TuneRuntime fits the Go runtime to a crash kernel with cpus CPUs and a
// few tens of MiB to spare: collect early and often rather than let the
// heap grow, since the dump itself streams through fixed buffers.
// kdumpinit calls it first thing; the benchmark's collector too, so that
// both run alike.
func TuneRuntime(cpus int) {
	runtime.GOMAXPROCS(max(cpus, 1))
	debug.SetGCPercent(20)
	debug.SetMemoryLimit(24 << 20)
}
