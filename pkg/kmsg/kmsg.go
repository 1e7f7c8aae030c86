// Package kmsg logs the crash kernel's init to the console and to the
// kernel log.
package kmsg

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Logger writes timestamped lines to the console and the kernel log.
//
// The console gets every line with a timestamp in the kernel's own format
// (seconds since boot), so the init's lines sort among the kernel's. The
// kernel log gets the same text at KERN_DEBUG: at the default console log
// level the kernel does not echo debug lines, so nothing appears twice, yet
// pstore or netconsole with a raised log level still record them.
type Logger struct {
	mu      sync.Mutex
	console io.Writer
	kmsg    io.Writer
	prefix  string
	clock   func() time.Duration
}

// New returns a Logger. kmsg may be nil (no /dev/kmsg); prefix names the
// program in every line.
func New(console, kmsg io.Writer, prefix string) *Logger {
	return &Logger{console: console, kmsg: kmsg, prefix: prefix, clock: Uptime}
}

// Uptime is the time since boot on the clock that printk timestamps use.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Printf logs a line to the console and the kernel log.
func (l *Logger) Printf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	// The kernel log first: a write to /dev/kmsg never blocks, while a
	// console can stop taking output, and the line must be recorded
	// somewhere either way.
	if l.kmsg != nil {
		// One write is one record for /dev/kmsg.
		fmt.Fprintf(l.kmsg, "<7>%s: %s\n", l.prefix, msg)
	}
	fmt.Fprintf(l.console, "[%12.6f] %s: %s\n", l.clock().Seconds(), l.prefix, msg)
}

// Progressf logs a line to the console only: progress lines would flood the
// kernel log buffer, which a crash kernel keeps small.
func (l *Logger) Progressf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.console, "[%12.6f] %s: %s\n", l.clock().Seconds(), l.prefix, msg)
}
