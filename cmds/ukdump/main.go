// Command ukdump prepares kdump in the first kernel (load, unload, status,
// mkinitrd) and reads dumps on any host (convert, dmesg, info). "ukdump
// help" lists the commands; commands.go defines them.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the exit code: 0 success, 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		return help(args, stdout, stderr)
	}
	c, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "ukdump: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	return c.execute(args, stdout, stderr)
}
