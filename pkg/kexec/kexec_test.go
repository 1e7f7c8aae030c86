package kexec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCrashCmdline(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		args := CrashArgs(goarch)
		for _, tc := range []struct{ running, want string }{
			{
				"BOOT_IMAGE=/vmlinuz root=UUID=1 ro quiet splash crashkernel=256M console=ttyS0,115200 panic=5\n",
				"console=ttyS0,115200 " + args,
			},
			{
				`console=tty0 dyndbg="file foo.c +p" rd.luks.uuid=x systemd.unit=a nr_cpus=8 net.ifnames=0`,
				`console=tty0 dyndbg="file foo.c +p" net.ifnames=0 ` + args,
			},
			{"console=ttyAMA0 irqpoll", "console=ttyAMA0 " + args},
			{"", args},
		} {
			if got := crashCmdline(goarch, tc.running, nil); got != tc.want {
				t.Errorf("%s: CrashCmdline(%q)\n got %q\nwant %q", goarch, tc.running, got, tc.want)
			}
		}
	}
	for _, x86 := range []string{"irqpoll", "mce=off", "acpi_no_memhotplug"} {
		if strings.Contains(CrashArgs("arm64"), x86) {
			t.Errorf("arm64 crash arguments hold x86's %s", x86)
		}
	}
	if got := CrashCmdline("console=ttyS0", []string{"loglevel=7"}); !strings.HasSuffix(got, " loglevel=7") {
		t.Errorf("extra args not appended last: %q", got)
	}
}

func TestReadStatus(t *testing.T) {
	dir := t.TempDir()
	if st, err := ReadStatus(dir); err != nil || st.Supported {
		t.Errorf("ReadStatus without kexec in sysfs = %+v, %v; want unsupported, no error", st, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(dir, "kernel", name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kexec_crash_loaded", "1\n")
	write("kexec_crash_size", "268435456\n")
	st, err := ReadStatus(dir)
	if err != nil || !st.Supported || !st.Loaded || st.Reserved != 256<<20 {
		t.Errorf("ReadStatus = %+v, %v", st, err)
	}
	write("kexec_crash_size", "lots\n")
	if _, err := ReadStatus(dir); err == nil {
		t.Error("garbage size accepted")
	}
}

func TestWithCPUs(t *testing.T) {
	base := CrashCmdline("console=ttyS0", nil)
	if got := WithCPUs(base, 1); got != base {
		t.Errorf("one CPU changed the command line: %q", got)
	}
	got := WithCPUs(base, 4)
	if !strings.Contains(" "+got+" ", " nr_cpus=4 ") || strings.Contains(got, "nr_cpus=1") {
		t.Errorf("WithCPUs(4) = %q", got)
	}
}
