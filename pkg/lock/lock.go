// Package lock serialises the ukdump verbs that change what a crash would
// do: those that load, reload or unload the crash kernel, write the
// crash_dm_crypt_keys items or edit crypttab. An administrator's reload
// beside a kernel hook's or udev's would otherwise interleave the key items
// and reuse, and leave no crash kernel loaded, or a state file that
// describes the other run.
//
// The lock is flock(2) on a file: the kernel drops it when its holder
// exits, however it exits, so a crashed ukdump never leaves the others
// waiting. The holder writes who it is into the file, for the message of
// the one that waits.
package lock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultWait bounds the wait for another holder: a load takes seconds
// (under emulation a minute); one that holds the lock longer is stuck,
// and waiting on would only stack up the hooks behind it.
const DefaultWait = 2 * time.Minute

// poll is how often a waiter tries again.
const poll = 100 * time.Millisecond

// Lock is a held lock; Release (or the process's exit) drops it.
type Lock struct {
	f *os.File
}

// Holder is who holds the lock, as it wrote itself into the file.
type Holder struct {
	PID   int
	Verb  string
	Since time.Time
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "another ukdump"
	}
	return fmt.Sprintf("ukdump %s (pid %d, since %s)", h.Verb, h.PID, h.Since.Format(time.TimeOnly))
}

// ErrBusy means the wait ran out with the lock still held.
var ErrBusy = errors.New("held by another ukdump")

// Take takes the lock at path for verb, waiting up to wait for another
// holder to finish; it says once on out that it waits, and for whom.
func Take(path, verb string, wait time.Duration, out io.Writer) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock: %s: %w", path, err)
		}
		h := readHolder(f)
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock: %s: %w: %s still runs after %s; try again once it has finished", path, ErrBusy, h, wait)
		}
		if !said {
			fmt.Fprintf(out, "waiting for %s to finish (up to %s)\n", h, wait)
			said = true
		}
		time.Sleep(poll)
	}
	l := &Lock{f: f}
	if err := l.record(verb); err != nil {
		return nil, errors.Join(err, l.Release())
	}
	return l, nil
}

// record writes the holder's line: pid, verb, start time.
func (l *Lock) record(verb string) error {
	line := fmt.Sprintf("%d %s %d\n", os.Getpid(), verb, time.Now().Unix())
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := l.f.WriteAt([]byte(line), 0); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// readHolder parses the holder's line; what it cannot read is left zero.
func readHolder(f *os.File) Holder {
	b := make([]byte, 128)
	n, _ := f.ReadAt(b, 0)
	var h Holder
	fields := strings.Fields(string(b[:n]))
	if len(fields) != 3 {
		return h
	}
	pid, err1 := strconv.Atoi(fields[0])
	sec, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil {
		return h
	}
	return Holder{PID: pid, Verb: fields[1], Since: time.Unix(sec, 0)}
}

// Release drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}
