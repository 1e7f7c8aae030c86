package main

import (
	"bufio"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/loader"
)

// terminalPrompt returns a passphrase prompt when standard input is a
// terminal, else nil: a service must not block on a prompt nobody sees.
func terminalPrompt() func(loader.Volume) ([]byte, error) {
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return func(v loader.Volume) ([]byte, error) {
		fd := int(os.Stdin.Fd())
		old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return nil, err
		}
		quiet := *old
		quiet.Lflag &^= unix.ECHO
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
			return nil, err
		}
		defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintf(os.Stderr, "Passphrase for %s (LUKS %s): ", v.Name, v.UUID)
		line, err := bufio.NewReader(os.Stdin).ReadSlice('\n')
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase: %w", err)
		}
		// ReadSlice returns the reader's own buffer: copy out and wipe it.
		pass := make([]byte, len(line)-1)
		copy(pass, line)
		clear(line)
		return pass, nil
	}
}
