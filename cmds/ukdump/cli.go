package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/ukdump/ukdump/pkg/loader"
	"github.com/ukdump/ukdump/pkg/lock"
)

// The exit codes, as the usage documents them.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one verb: an entry of commands.
type command struct {
	name string
	// synopsis is the verb's usage line: its flags and its arguments.
	synopsis string
	// summary is the verb's line in the overall usage.
	summary string
	// flags defines the verb's own flags, and no other, on fs; their values
	// go to o. Nil for a verb without flags.
	flags func(fs *flag.FlagSet, o *opts)
	// args are the positional arguments, all required, in order.
	args []arg
	// run carries the verb out once flags and arguments are checked.
	run func(c *call) error
	// locked verbs change what a crash would do (the loaded crash kernel,
	// the key items, crypttab): one runs at a time (package lock).
	locked bool
}

// arg is a positional argument: its name in the synopsis and what it is.
type arg struct {
	name, doc string
}

// call is one run of a verb.
type call struct {
	opts
	args           []string
	stdout, stderr io.Writer
}

// usageError is a mistake in a verb's flags or arguments that only its run
// can see: it ends like a bad flag, with exit code 2 and the synopsis.
type usageError string

func (e usageError) Error() string { return string(e) }

// exitStatus ends a verb with its code and no message of its own: the
// verb's output has said why (status: no dump would be written; estimate:
// the reservation is short).
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// flagSet defines the verb's flags. The set itself prints nothing:
// execute and help decide what goes where.
func (c command) flagSet(o *opts) *flag.FlagSet {
	fs := flag.NewFlagSet("ukdump "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if c.flags != nil {
		c.flags(fs, o)
	}
	return fs
}

// execute parses args for the verb and runs it. It returns the exit code.
func (c command) execute(args []string, stdout, stderr io.Writer) int {
	cl := &call{stdout: stdout, stderr: stderr}
	fs := c.flagSet(&cl.opts)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.help(stdout)
			return exitOK
		}
		return c.usageFailure(stderr, err.Error())
	}
	cl.args = fs.Args()
	if len(cl.args) != len(c.args) {
		if len(c.args) == 0 {
			return c.usageFailure(stderr, fmt.Sprintf("unexpected arguments %q", cl.args))
		}
		return c.usageFailure(stderr, fmt.Sprintf("want %s (%s), have %d", arguments(len(c.args)), c.argNames(), len(cl.args)))
	}
	err := c.runLocked(cl)
	var ue usageError
	var es exitStatus
	switch {
	case errors.As(err, &ue):
		return c.usageFailure(stderr, ue.Error())
	case errors.As(err, &es):
		return int(es)
	case err != nil:
		fmt.Fprintf(stderr, "ukdump %s: %v\n", c.name, err)
		return exitFailure
	}
	return exitOK
}

// runLocked runs the verb, holding the lock when it is a locked one. The
// lock lives beside the state file: /run/ukdump/lock.
func (c command) runLocked(cl *call) (err error) {
	if !c.locked {
		return c.run(cl)
	}
	state := cl.loader.StateFile
	if state == "" {
		state = loader.DefaultStateFile
	}
	l, err := lock.Take(filepath.Join(filepath.Dir(state), "lock"), c.name, lock.DefaultWait, cl.stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, l.Release()) }()
	return c.run(cl)
}

func (c command) usageFailure(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "ukdump %s: %s\nusage: %s\n", c.name, msg, c.synopsis)
	return exitUsage
}

func arguments(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}

func (c command) argNames() string {
	names := make([]string, len(c.args))
	for i, a := range c.args {
		names[i] = a.name
	}
	return strings.Join(names, " ")
}

// help writes what "ukdump help VERB" and "ukdump VERB -h" show: synopsis,
// summary, arguments and flags.
func (c command) help(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis, c.summary)
	if len(c.args) > 0 {
		fmt.Fprint(w, "\narguments:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, a := range c.args {
			fmt.Fprintf(tw, "  %s\t%s\n", a.name, a.doc)
		}
		tw.Flush()
	}
	fs := c.flagSet(&opts{})
	if hasFlags(fs) {
		fmt.Fprint(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// usage writes the overall usage, made from commands.
func usage(w io.Writer) {
	fmt.Fprint(w, "usage: ukdump <command> [flags] [arguments]\n\ncommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  help\tshow this usage, or a command's arguments and flags\n")
	tw.Flush()
	fmt.Fprint(w, `
"ukdump help <command>" or "ukdump <command> -h" shows a command's arguments
and flags.

Exit status: 0 success, 1 failure, 2 usage error. status exits 1 when a
crash now would not give a dump; estimate when the reservation is short.
`)
}

// help serves "ukdump help [COMMAND]".
func help(args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		usage(stdout)
		return exitOK
	case 1:
		if c, ok := lookup(args[0]); ok {
			c.help(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "ukdump help: unknown command %q\n\n", args[0])
	default:
		fmt.Fprintf(stderr, "ukdump help: want one command, have %q\n\n", args)
	}
	usage(stderr)
	return exitUsage
}
