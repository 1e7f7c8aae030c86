package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ErrTimeout is wrapped by the error of a run that Options.Timeout ended, so
// callers can tell a hung guest from a QEMU failure with errors.Is.
var ErrTimeout = errors.New("qemu: timed out")

// tailLines is how much of the console an error message carries: enough to
// show a panic and its backtrace, little enough to read in a test log.
const tailLines = 40

// waitDelay bounds how long Wait lingers for QEMU's output pipes to close
// after the process is gone, in case something else inherited them.
const waitDelay = 5 * time.Second

// Result of a finished run. Run and VM.Wait fill it in even when they also
// return an error, because the console is what explains the failure.
type Result struct {
	// Console is everything the guest wrote to its serial port, with
	// carriage returns and terminal escape sequences removed.
	Console string
	// Stderr is QEMU's own diagnostics, kept apart from Console so they
	// cannot split guest lines.
	Stderr string
	// Duration is the wall time from starting QEMU until it exited.
	Duration time.Duration
	// TimedOut reports that Options.Timeout passed and the VM was killed.
	TimedOut bool
	// ExitErr is the error from waiting for QEMU: nil for exit status 0,
	// an *exec.ExitError for a non-zero status or a kill.
	ExitErr error
}

// VM is a running QEMU process started by Start. Its methods may be called
// from any goroutine.
type VM struct {
	timeout time.Duration
	cmd     *exec.Cmd
	console *console
	stderr  bytes.Buffer // written by exec's copier, read only after done
	runCtx  context.Context
	cancel  context.CancelFunc
	started time.Time

	done chan struct{} // closed when res and err are final
	res  *Result
	err  error

	// matchMu serialises WaitFor calls; matched is the console offset just
	// past the line the last successful WaitFor returned.
	matchMu sync.Mutex
	matched int

	stdin io.WriteCloser // with Options.Input
}

// Run boots a VM and waits for QEMU to exit. It returns an error when QEMU
// cannot start, when Options.Timeout passes (the error wraps ErrTimeout),
// when ctx is done first, or when QEMU exits with a non-zero status; the
// error then carries the last console lines. The Result is non-nil in every
// case.
func Run(ctx context.Context, o Options) (*Result, error) {
	vm, err := Start(ctx, o)
	if err != nil {
		return &Result{ExitErr: err}, err
	}
	return vm.Wait()
}

// Start launches QEMU and returns without waiting for it, for tests that
// react to console output with WaitFor. The VM runs until it exits by
// itself, Options.Timeout passes or ctx is done; Wait reports which.
func Start(ctx context.Context, o Options) (*VM, error) {
	if o.Kernel == "" {
		return nil, errors.New("qemu: Options.Kernel is empty")
	}
	vm := &VM{
		timeout: o.timeout(),
		console: newConsole(o.Console),
		done:    make(chan struct{}),
	}
	vm.runCtx, vm.cancel = context.WithTimeoutCause(ctx, vm.timeout, ErrTimeout)

	cmd := exec.CommandContext(vm.runCtx, o.binary(), o.Args()...)
	// Without Input, stdin stays nil, i.e. /dev/null; with -monitor none
	// QEMU never reads commands from it, only the guest's serial input.
	if o.Input {
		w, err := cmd.StdinPipe()
		if err != nil {
			vm.cancel()
			return nil, fmt.Errorf("qemu: stdin: %w", err)
		}
		vm.stdin = w
	}
	cmd.Stdout = vm.console
	cmd.Stderr = &vm.stderr
	setProcAttr(cmd)
	cmd.Cancel = func() error { return killProcessGroup(cmd) }
	cmd.WaitDelay = waitDelay
	vm.cmd = cmd

	vm.started = time.Now()
	if err := cmd.Start(); err != nil {
		vm.cancel()
		return nil, fmt.Errorf("qemu: starting %s: %w", cmd.Path, err)
	}
	go vm.reap()
	return vm, nil
}

// reap waits for QEMU and records the outcome exactly once.
func (vm *VM) reap() {
	waitErr := vm.cmd.Wait()
	dur := time.Since(vm.started)
	// Read the cause before our own cancel, which would otherwise make every
	// finished run look cancelled.
	cause := context.Cause(vm.runCtx)
	vm.cancel()

	res := &Result{
		Console:  vm.console.String(),
		Stderr:   vm.stderr.String(),
		Duration: dur,
		ExitErr:  waitErr,
	}
	var err error
	switch {
	case waitErr == nil:
		// A clean exit wins even if the deadline passed at the same moment.
	case errors.Is(cause, ErrTimeout):
		res.TimedOut = true
		err = fmt.Errorf("%w: VM killed after %v%s", ErrTimeout, vm.timeout, details(res))
	case cause != nil:
		err = fmt.Errorf("qemu: VM killed after %v: %w%s", dur.Round(time.Millisecond), cause, details(res))
	default:
		err = fmt.Errorf("qemu: %w after %v%s", waitErr, dur.Round(time.Millisecond), details(res))
	}
	vm.res, vm.err = res, err
	close(vm.done)
}

// details formats QEMU's stderr and the console tail for an error message.
func details(r *Result) string {
	var b strings.Builder
	if s := strings.TrimSpace(r.Stderr); s != "" {
		fmt.Fprintf(&b, "\n--- qemu stderr (last %d lines) ---\n%s", tailLines, Tail(s, tailLines))
	}
	fmt.Fprintf(&b, "\n--- console (last %d lines) ---\n%s", tailLines, Tail(r.Console, tailLines))
	return b.String()
}

// Send types s on the guest's serial console. It needs Options.Input.
func (vm *VM) Send(s string) error {
	if vm.stdin == nil {
		return errors.New("qemu: Send without Options.Input")
	}
	if _, err := io.WriteString(vm.stdin, s); err != nil {
		return fmt.Errorf("qemu: sending to the console: %w", err)
	}
	return nil
}

// Mark returns the console offset after everything printed so far; WaitFor
// and WaitFrom calls after SkipTo(Mark()) see only later output.
func (vm *VM) Mark() int {
	return vm.console.len()
}

// SkipTo makes the next WaitFor start at console offset off (from Mark).
func (vm *VM) SkipTo(off int) {
	vm.matchMu.Lock()
	defer vm.matchMu.Unlock()
	if off > vm.matched {
		vm.matched = off
	}
}

// Console returns everything the guest printed so far.
func (vm *VM) Console() string { return vm.console.String() }

// Wait blocks until QEMU exits and returns the same Result and error as Run
// would. It may be called more than once.
func (vm *VM) Wait() (*Result, error) {
	<-vm.done
	return vm.res, vm.err
}

// Done is closed when QEMU has exited and Wait no longer blocks.
func (vm *VM) Done() <-chan struct{} {
	return vm.done
}

// WaitFor blocks until a console line matches re and returns that line
// (without its newline). Like expect, each call resumes after the line the
// previous successful call returned, so consecutive calls can wait for
// events in order even when the same text (say, a kernel banner) appears
// once per boot. It fails if ctx is done first or if QEMU exits without a
// match; it does not stop the VM in either case.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	vm.matchMu.Lock()
	defer vm.matchMu.Unlock()

	off := vm.matched
	for {
		// Checked before reading: once QEMU has exited the output is final
		// and a last unterminated line counts too.
		exited := isClosed(vm.done)
		data, changed := vm.console.from(off)
		line, consumed, ok := matchLines(data, re, exited)
		if ok {
			vm.matched = off + consumed
			return line, nil
		}
		off += consumed
		if exited {
			res, err := vm.Wait()
			if err == nil {
				err = errors.New("exit status 0")
			}
			return "", fmt.Errorf("qemu: VM exited before a console line matched %q: %w%s", re, err, details(res))
		}
		select {
		case <-changed:
		case <-vm.done:
		case <-ctx.Done():
			return "", fmt.Errorf("qemu: waiting for console line matching %q: %w\n--- console (last %d lines) ---\n%s",
				re, context.Cause(ctx), tailLines, Tail(vm.console.String(), tailLines))
		}
	}
}

// matchLines scans complete lines of data for re. It returns the matching
// line and the bytes consumed through its newline, or, without a match, how
// many bytes of complete lines it looked at. With final set, a trailing line
// without newline is considered as well.
func matchLines(data []byte, re *regexp.Regexp, final bool) (line string, consumed int, ok bool) {
	pos := 0
	for pos < len(data) {
		n := bytes.IndexByte(data[pos:], '\n')
		if n < 0 {
			if final && re.Match(data[pos:]) {
				return string(data[pos:]), len(data), true
			}
			break
		}
		l := data[pos : pos+n]
		pos += n + 1
		if re.Match(l) {
			return string(l), pos, true
		}
	}
	return "", pos, false
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
