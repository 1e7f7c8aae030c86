package qemu

import (
	"bytes"
	"io"
	"sync"
)

// console collects the guest's serial output. It is the io.Writer given to
// exec for QEMU's stdout; never an *os.File, so that QEMU gets a pipe of its
// own and cannot change flags (O_NONBLOCK, termios) on the test's stdout.
type console struct {
	live io.Writer

	mu  sync.Mutex
	buf []byte
	esc escState // carried across writes: a sequence may be split
	// changed is closed and replaced on every write, so any number of
	// waiters can block on new output without polling.
	changed chan struct{}
}

func newConsole(live io.Writer) *console {
	return &console{live: live, changed: make(chan struct{})}
}

// Write stores p as plain text for matching and Tail: without the "\r" of
// the serial line's "\r\n", and without the terminal escape sequences that
// SeaBIOS and the boot stub send (reset, clear screen, line wrap off), which
// would also garble a developer's terminal when Console is stderr.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := len(c.buf)
	for _, b := range p {
		if c.esc.consume(b) {
			c.buf = append(c.buf, b)
		}
	}
	if c.live != nil && len(c.buf) > start {
		_, _ = c.live.Write(c.buf[start:])
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return len(p), nil
}

// from returns the output starting at byte offset off, and a channel closed
// on the next write; it avoids copying the whole log on every wake-up.
func (c *console) from(off int) ([]byte, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off > len(c.buf) {
		off = len(c.buf)
	}
	return bytes.Clone(c.buf[off:]), c.changed
}

func (c *console) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// escState tracks whether the console stream is inside an escape sequence.
type escState uint8

const (
	escNone  escState = iota
	escStart          // after ESC
	escCSI            // after ESC [, until a final byte
)

// consume advances the state by one byte and reports whether the byte is
// text to keep. It knows ESC [ ... final (CSI) and two-byte ESC x forms,
// which is all a BIOS and a kernel send; a byte it cannot place ends the
// sequence rather than swallowing the rest of the log.
func (s *escState) consume(b byte) bool {
	switch *s {
	case escStart:
		if b == '[' {
			*s = escCSI
		} else {
			*s = escNone
		}
		return false
	case escCSI:
		switch {
		case b >= 0x20 && b <= 0x3f: // parameter and intermediate bytes
		case b >= 0x40 && b <= 0x7e: // final byte
			*s = escNone
		default:
			*s = escNone
			return s.consume(b)
		}
		return false
	}
	switch b {
	case 0x1b:
		*s = escStart
		return false
	case '\r':
		return false
	}
	return true
}
