// Package qemu runs short-lived QEMU virtual machines for end-to-end tests.
//
// The tests boot real kernels, crash them and let a crash kernel write a
// dump, after which QEMU exits on its own because of -no-reboot. The harness
// is therefore built around "run to exit, then inspect the console": Run
// starts QEMU with the serial console on a pipe, enforces a hard timeout,
// kills the whole process group when it passes, and hands back everything
// the guest printed. Start and VM.WaitFor cover the rarer case of reacting
// to console output while the guest runs.
//
// Acceleration is always TCG: the machines that run these tests have no
// usable KVM, and pinning it keeps timings comparable between developers
// and CI.
package qemu

import (
	"io"
	"strconv"
	"strings"
	"time"
)

// Defaults used by Options when a field is left at its zero value.
const (
	DefaultBinary = "qemu-system-x86_64"
	// ARM64Binary is the default binary of ArchARM64.
	ARM64Binary      = "qemu-system-aarch64"
	DefaultMemoryMiB = 512
	DefaultCPUs      = 1
	// DefaultTimeout bounds a run whose Options.Timeout is zero, so that a
	// forgotten timeout cannot hang a test binary; a kdump cycle under TCG
	// takes about a minute.
	DefaultTimeout = 5 * time.Minute
)

// Arch is the guest's architecture.
type Arch string

// The architectures Run boots.
const (
	// ArchX86_64 is the default: the PC machine, serial console ttyS0.
	ArchX86_64 Arch = "x86_64"
	// ArchARM64 is QEMU's virt machine with the emulator's most capable
	// CPU (-M virt -cpu max), booted with -kernel Image and its own device
	// tree; serial console ttyAMA0; virtio disks on its PCIe host.
	ArchARM64 Arch = "arm64"
)

// Console returns the kernel's name of the guest's serial console, for
// console= on the kernel command line.
func (a Arch) Console() string {
	if a == ArchARM64 {
		return "ttyAMA0"
	}
	return "ttyS0"
}

// Options describes one VM run. The zero value of every field but Kernel is
// usable.
type Options struct {
	// Arch is the guest's architecture. Default ArchX86_64.
	Arch Arch
	// Binary is the QEMU executable, looked up in PATH when it has no
	// slash. Default DefaultBinary, or ARM64Binary for ArchARM64.
	Binary string
	// Kernel is the kernel to boot with -kernel (a bzImage, or an arm64
	// Image); required.
	Kernel string
	// Initrd is an optional initramfs passed with -initrd.
	Initrd string
	// Cmdline is the kernel command line. It needs console=ttyS0
	// (Arch.Console) for the guest's output to reach Console.
	Cmdline string
	// MemoryMiB is the guest RAM. Default DefaultMemoryMiB.
	MemoryMiB int
	// CPUs is the number of virtual CPUs. Default DefaultCPUs.
	CPUs int
	// Disks are raw images attached as virtio drives in order, so the
	// guest sees them as vda, vdb, ... (given a virtio-blk driver).
	Disks []string
	// Timeout is a hard limit for the whole run: the VM is killed when it
	// passes. Default DefaultTimeout.
	Timeout time.Duration
	// Console, if set, receives the guest's serial output live, cleaned
	// like Result.Console, e.g. a log file that survives a hung test.
	// Write errors are ignored so a broken log cannot stall the guest.
	Console io.Writer
	// ExtraArgs are appended after all generated arguments, so they can add
	// devices or override earlier options where QEMU lets the last one win.
	ExtraArgs []string
	// Reboot lets a guest reboot (a real system after its dump) boot again
	// with the same kernel and command line instead of ending the run.
	Reboot bool
	// Input gives the guest's serial console a pipe from the test (see
	// VM.Send), as an administrator's terminal.
	Input bool
}

func (o Options) binary() string {
	switch {
	case o.Binary != "":
		return o.Binary
	case o.Arch == ArchARM64:
		return ARM64Binary
	}
	return DefaultBinary
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// Args returns the full argument vector after the binary name, with defaults
// applied. Run uses exactly this, so tests and logs can show what ran.
func (o Options) Args() []string {
	mem := o.MemoryMiB
	if mem <= 0 {
		mem = DefaultMemoryMiB
	}
	cpus := o.CPUs
	if cpus <= 0 {
		cpus = DefaultCPUs
	}
	var args []string
	if o.Arch == ArchARM64 {
		// pauth-impdef: the emulator's own pointer authentication
		// algorithm instead of QARMA, which costs TCG much time and that
		// no guest can tell apart.
		args = append(args, "-M", "virt", "-cpu", "max,pauth-impdef=on")
	}
	args = append(args,
		"-accel", "tcg",
		// -nographic puts the serial port on stdio; -monitor none keeps the
		// monitor off it, so stdin (/dev/null) is never read for commands.
		"-nographic",
		"-monitor", "none",
	)
	if !o.Reboot {
		// A guest reboot (panic=-1, sysrq-b, a finished kdump) ends the run
		// instead of booting the first kernel again.
		args = append(args, "-no-reboot")
	}
	args = append(args,
		// No default NIC: the guests need no network, and user-mode
		// networking would give them a route out of the test machine.
		"-nic", "none",
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		"-kernel", o.Kernel,
	)
	if o.Initrd != "" {
		args = append(args, "-initrd", o.Initrd)
	}
	if o.Cmdline != "" {
		args = append(args, "-append", o.Cmdline)
	}
	for _, d := range o.Disks {
		args = append(args, "-drive", "file="+escapeOptValue(d)+",if=virtio,format=raw")
	}
	return append(args, o.ExtraArgs...)
}

// escapeOptValue doubles commas, which QEMU's option parser would otherwise
// take as the start of the next key=value pair inside a path.
func escapeOptValue(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

// Tail returns the last n lines of s, for error messages that would be
// useless with a full boot log. A trailing newline does not count as an
// extra empty line.
func Tail(s string, n int) string {
	if n <= 0 {
		return ""
	}
	s = strings.TrimSuffix(s, "\n")
	i := len(s)
	for range n {
		j := strings.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return s
		}
		i = j
	}
	return s[i+1:]
}
