package main

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/ukdump/ukdump/pkg/watchdog"
)

// stallTimeout ends a dump that makes no progress at all, e.g. a disk that
// stopped answering. A slow dump that keeps moving is never cut short.
const stallTimeout = 5 * time.Minute

// Hardware watchdog: fed every watchTick while init is alive and not
// ending; it resets the machine hwTimeout after the last feed.
const (
	watchTick = 5 * time.Second
	hwTimeout = 60 * time.Second
)

// watch is the stall watchdog: it takes the failure action when nothing
// kicks it for longer than its limit, and feeds a hardware watchdog while
// init is alive, so that even a hung init or kernel ends in a reset.
type watch struct {
	end   *ender
	limit time.Duration
	last  atomic.Int64
	hw    atomic.Pointer[watchdog.Device]
}

// newWatch allows the target wait on top of the stall timeout: waiting for
// a device is not progress but has its own limit.
func newWatch(e *ender, wait time.Duration) *watch {
	w := &watch{end: e, limit: stallTimeout + wait}
	w.Kick()
	return w
}

// Kick records progress.
func (w *watch) Kick() { w.last.Store(time.Now().UnixNano()) }

func (w *watch) run() {
	for {
		time.Sleep(watchTick)
		if w.end.ending.Load() {
			return // stop feeding: the hardware watchdog backs the way out
		}
		if idle := time.Since(time.Unix(0, w.last.Load())); idle > w.limit {
			w.end.fail("watchdog", fmt.Errorf("no progress for %s", idle.Round(time.Second)))
		}
		if hw := w.hw.Load(); hw != nil {
			if err := hw.Ping(); err != nil {
				w.end.log.Printf("warning: %v", err)
			}
		}
	}
}

// armHardware opens the hardware watchdog if the machine has one (its
// driver is among the modules the generator packed).
func (w *watch) armHardware(path string) {
	d, err := watchdog.Open(path, hwTimeout)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return
	case err != nil:
		w.end.log.Printf("warning: hardware watchdog: %v", err)
		return
	}
	w.hw.Store(d)
	w.end.log.Printf("hardware watchdog %s armed (%s)", path, d.Timeout)
}
