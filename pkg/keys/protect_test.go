package keys

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestProtect: after Protect, the memory a key buffer lands in is locked
// (VmLck grows with what the process touches) and the process is not
// dumpable. In a child, not to lock the test binary's own memory.
func TestProtect(t *testing.T) {
	if os.Getenv("UKDUMP_PROTECT_CHILD") != "" {
		if err := Protect(); err != nil {
			fmt.Println("protect:", err)
			os.Exit(1)
		}
		buf := make([]byte, 8<<20)
		for i := range buf {
			buf[i] = byte(i)
		}
		if d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); d != 0 {
			fmt.Println("dumpable:", d)
			os.Exit(1)
		}
		status, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmLck:") {
				fmt.Println(l)
			}
		}
		Wipe(buf)
		os.Exit(0)
	}
	if os.Getuid() != 0 {
		t.Skip("locking 8 MiB needs CAP_IPC_LOCK")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProtect$")
	cmd.Env = append(os.Environ(), "UKDUMP_PROTECT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.ENOEXEC) {
		t.Skipf("the test binary cannot run itself here (under qemu-user): %v", err)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var kib int
	if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(string(out), "VmLck:")), "%d kB", &kib); err != nil || kib < 8<<10 {
		t.Errorf("after Protect and touching 8 MiB: %q, want VmLck of 8 MiB or more", out)
	}
}
