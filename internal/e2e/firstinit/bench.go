package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/kexec"
)

// benchCrashImage is the benchmark's crash initramfs (crashbench as init,
// makedumpfile and its libraries), packed by the host test.
const benchCrashImage = "/bench/crash.img"

// benchCrash is the scenario "bench": fill memory as a working server's,
// load the benchmark's crash kernel instead of ukdump's (with
// ukdump.crashcpus CPUs) and crash. The crash kernel times the tools on the
// vmcore this leaves.
func benchCrash(params map[string]string) error {
	anon, err := fill(params)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(anon)
	cpus, err := strconv.Atoi(params["ukdump.crashcpus"])
	if err != nil || cpus < 1 {
		cpus = 1
	}
	k, err := os.Open(kernelPath())
	if err != nil {
		return err
	}
	defer k.Close()
	i, err := os.Open(benchCrashImage)
	if err != nil {
		return err
	}
	defer i.Close()
	running, _ := os.ReadFile("/proc/cmdline")
	cmdline := strings.Replace(kexec.CrashCmdline(string(running), nil), "nr_cpus=1", fmt.Sprintf("nr_cpus=%d", cpus), 1)
	if _, err := kexec.LoadCrash(k, i, cmdline); err != nil {
		return err
	}
	unix.Sync()
	say("crashing")
	return os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0)
}
