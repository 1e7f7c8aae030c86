package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/keys"
	"github.com/ukdump/ukdump/pkg/loader"
)

// maxPromptLen bounds a typed passphrase.
const maxPromptLen = 8 << 10

// terminalPrompt returns a passphrase prompt when standard input is a
// terminal, else nil: a service must not block on a prompt nobody sees.
func terminalPrompt() func(loader.Volume) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !isTerminal(fd) {
		return nil
	}
	return func(v loader.Volume) (pass []byte, err error) {
		old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		quiet := *old
		quiet.Lflag &^= unix.ECHO
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
			return nil, fmt.Errorf("terminal: turning echo off: %w", err)
		}
		defer func() {
			if rerr := unix.IoctlSetTermios(fd, unix.TCSETS, old); rerr != nil && err == nil {
				keys.Wipe(pass)
				pass, err = nil, fmt.Errorf("terminal: restoring echo: %w", rerr)
			}
		}()
		fmt.Fprintf(os.Stderr, "Passphrase for %s (LUKS %s): ", v.Name, v.UUID)
		pass, err = readLine(fd, maxPromptLen)
		fmt.Fprintln(os.Stderr)
		return pass, err
	}
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// readLine reads one line from fd a byte at a time into a buffer owned
// here, so no reader buffer keeps a copy of the passphrase; the newline is
// not part of it. Over-long input is an error, and the buffer is wiped.
func readLine(fd, max int) ([]byte, error) {
	buf := make([]byte, max)
	n := 0
	for {
		if n == len(buf) {
			keys.Wipe(buf)
			return nil, fmt.Errorf("passphrase longer than %d bytes", max)
		}
		m, err := unix.Read(fd, buf[n:n+1])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			keys.Wipe(buf)
			return nil, fmt.Errorf("reading passphrase: %w", err)
		case m == 0 && n == 0:
			return nil, errors.New("reading passphrase: end of input")
		case m == 0 || buf[n] == '\n':
			buf[n] = 0
			return buf[:n:n], nil
		}
		n++
	}
}
