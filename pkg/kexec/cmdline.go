package kexec

import (
	"runtime"
	"strconv"
	"strings"
)

// crashArgs are added to every crash kernel command line, per architecture
// (GOARCH). They are what kdump tools have learnt a crash kernel needs: one
// CPU (each costs memory and the dead kernel's other CPUs are stopped
// anyway), devices reset from whatever state the panic left them in, and a
// reboot soon after any panic of the crash kernel itself, so a failed dump
// never hangs the machine; a task stuck in the kernel for two minutes (a
// write to a disk that stopped answering) is such a panic too. x86_64 adds
// polled interrupts (IO-APIC routing may be stale after a panic), no
// machine-check handling and no ACPI memory hotplug; arm64's GIC is reset
// by the crash kernel and has neither MCE nor those ACPI options.
var crashArgs = map[string]string{
	"amd64": "nr_cpus=1 reset_devices irqpoll panic=10 hung_task_panic=1 cgroup_disable=memory mce=off numa=off " +
		"acpi_no_memhotplug transparent_hugepage=never novmcoredd cma=0 hugetlb_cma=0",
	"arm64": "nr_cpus=1 reset_devices panic=10 hung_task_panic=1 cgroup_disable=memory numa=off " +
		"transparent_hugepage=never novmcoredd cma=0 hugetlb_cma=0",
}

// CrashArgs returns the arguments added to every crash kernel command line
// on goarch (amd64 or arm64; others get arm64's, which name nothing
// x86-specific).
func CrashArgs(goarch string) string {
	if a, ok := crashArgs[goarch]; ok {
		return a
	}
	return crashArgs["arm64"]
}

// dropped reports whether a first-kernel argument must not reach the crash
// kernel: the reservation itself, anything that sizes or places memory the
// crash kernel does not have, CPU counts, quietness (the console is the only
// record of a failed dump), the root and init of the first system, and the
// options CrashArgs sets.
func dropped(arg string) bool {
	name, _, _ := strings.Cut(arg, "=")
	switch name {
	case "crashkernel", "quiet", "splash", "rhgb", "hugepages", "hugepagesz", "default_hugepagesz",
		"nr_cpus", "maxcpus", "possible_cpus", "panic", "hung_task_panic", "root", "rootflags", "rootfstype", "ro", "rw",
		"init", "rdinit", "resume", "resume_offset", "initrd", "BOOT_IMAGE", "cma", "hugetlb_cma",
		"kfence.sample_interval", "memmap", "mem", "movablecore", "kernelcore", "loglevel", "irqpoll",
		"reset_devices", "cgroup_disable", "mce", "numa", "transparent_hugepage", "acpi_no_memhotplug",
		"novmcoredd", "elfcorehdr", "dmcryptkeys", "kexec_jump_back_entry":
		return true
	}
	return strings.HasPrefix(name, "rd.") || strings.HasPrefix(name, "systemd.")
}

// WithCPUs gives a command line from CrashCmdline n CPUs (nr_cpus=n)
// instead of CrashArgs' one.
func WithCPUs(cmdline string, n int) string {
	if n <= 1 {
		return cmdline
	}
	f := strings.Fields(cmdline)
	for i, a := range f {
		if a == "nr_cpus=1" {
			f[i] = "nr_cpus=" + strconv.Itoa(n)
		}
	}
	return strings.Join(f, " ")
}

// CrashCmdline derives the crash kernel command line from the running one,
// for a crash kernel of the machine this runs on (the loader runs in the
// kernel whose crash kernel it loads). Arguments that hold quotes are kept
// whole.
func CrashCmdline(running string, extra []string) string {
	return crashCmdline(runtime.GOARCH, running, extra)
}

func crashCmdline(goarch, running string, extra []string) string {
	var out []string
	for _, arg := range splitArgs(running) {
		if !dropped(arg) {
			out = append(out, arg)
		}
	}
	out = append(out, CrashArgs(goarch))
	out = append(out, extra...)
	return strings.Join(out, " ")
}

// splitArgs splits a kernel command line at spaces outside double quotes,
// as the kernel does.
func splitArgs(s string) []string {
	var args []string
	var cur strings.Builder
	quoted := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\n' || r == '\t') && !quoted:
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}
