package qemu

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Shell runs commands in a root shell on the guest's serial console, as an
// administrator at a terminal would (the guest logs root in on ttyS0). Each
// command is framed by markers the shell prints, so its output and exit
// status can be told from kernel messages and the echo of what was typed.
type Shell struct {
	vm *VM
	n  int
}

// WaitShell waits, up to ctx, until a shell answers on the console (a login
// takes a while after the kernel boots), then quiets it: no echo of typed
// input, no prompt, no kernel messages on the console. It needs
// Options.Input.
func (vm *VM) WaitShell(ctx context.Context) (*Shell, error) {
	sh := &Shell{vm: vm}
	for {
		sh.n++
		tag := "__ukdump_ready_" + strconv.Itoa(sh.n) + "__"
		mark := vm.console.len()
		if err := vm.Send("echo " + tag + "\n"); err != nil {
			return nil, err
		}
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := vm.scan(try, mark, regexp.MustCompile(`(?m)^`+tag+`$`))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || isClosed(vm.done) {
			return nil, fmt.Errorf("qemu: no shell on the console: %w", err)
		}
	}
	// Typing can race the login's last steps (a fast boot): what is typed
	// then may be lost. Ask again, with fresh markers, a few times.
	var err error
	for range 4 {
		try, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, _, err = sh.Run(try, "stty -echo; PS1=; PS2=; dmesg -n 1")
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return sh, nil
}

// Run runs cmd (one line of shell, no trailing comment) and returns its
// output and exit status.
func (sh *Shell) Run(ctx context.Context, cmd string) (string, int, error) {
	sh.n++
	b, e := "__ukdump_b"+strconv.Itoa(sh.n)+"__", "__ukdump_e"+strconv.Itoa(sh.n)+"__"
	mark := sh.vm.console.len()
	if err := sh.vm.Send("echo " + b + "; { " + cmd + "\n}; echo " + e + " $?\n"); err != nil {
		return "", 0, err
	}
	re := regexp.MustCompile(`(?ms)^` + b + "\n(.*?)^" + e + ` (\d+)$`)
	m, err := sh.vm.scan(ctx, mark, re)
	if err != nil {
		return "", 0, fmt.Errorf("qemu: shell command %q: %w", cmd, err)
	}
	rc, _ := strconv.Atoi(m[2])
	return m[1], rc, nil
}

// MustRun is Run with a non-zero status turned into an error.
func (sh *Shell) MustRun(ctx context.Context, cmd string) (string, error) {
	out, rc, err := sh.Run(ctx, cmd)
	if err == nil && rc != 0 {
		err = fmt.Errorf("qemu: shell command %q exited %d:\n%s", cmd, rc, out)
	}
	return out, err
}

// Type sends cmd without waiting for it: for commands that do not come
// back, such as crashing the machine.
func (sh *Shell) Type(cmd string) error { return sh.vm.Send(cmd + "\n") }

// scan waits until the console text after offset from matches re and
// returns the submatches.
func (vm *VM) scan(ctx context.Context, from int, re *regexp.Regexp) ([]string, error) {
	for {
		exited := isClosed(vm.done)
		data, changed := vm.console.from(from)
		if m := re.FindSubmatch(data); m != nil {
			out := make([]string, len(m))
			for i, s := range m {
				out[i] = string(s)
			}
			return out, nil
		}
		if exited {
			return nil, fmt.Errorf("VM exited first%s", details(vm.res))
		}
		select {
		case <-changed:
		case <-vm.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %q: %w\n--- console (last %d lines) ---\n%s",
				re, context.Cause(ctx), tailLines, Tail(vm.console.String(), tailLines))
		}
	}
}

// WaitPrompt waits for re in the console output after the line the last
// WaitFor (or WaitPrompt) matched, including a line not yet ended: a prompt
// such as "Please unlock disk vda_crypt: " waits for input on the same
// line. The next WaitFor resumes after the match.
func (vm *VM) WaitPrompt(ctx context.Context, re *regexp.Regexp) error {
	vm.matchMu.Lock()
	defer vm.matchMu.Unlock()
	for {
		exited := isClosed(vm.done)
		data, changed := vm.console.from(vm.matched)
		if loc := re.FindIndex(data); loc != nil {
			vm.matched += loc[1]
			return nil
		}
		if exited {
			return fmt.Errorf("qemu: VM exited before %q appeared%s", re, details(vm.res))
		}
		select {
		case <-changed:
		case <-vm.done:
		case <-ctx.Done():
			return fmt.Errorf("qemu: waiting for %q: %w\n--- console (last %d lines) ---\n%s",
				re, context.Cause(ctx), tailLines, Tail(vm.console.String(), tailLines))
		}
	}
}
