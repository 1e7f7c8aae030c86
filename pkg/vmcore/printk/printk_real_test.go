package printk

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// openReal opens the real vmcore named by env (see vmcoretest), or skips,
// with what reading its log needs.
func openReal(t *testing.T, env string) (*vmcore.Core, *vmcore.VMCOREINFO, *vmcore.Translator, string) {
	t.Helper()
	c, path := vmcoretest.Open(t, env, vmcore.Open)
	info, err := c.VMCOREINFO()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.NewTranslator()
	if err != nil {
		t.Fatal(err)
	}
	return c, info, tr, path
}

// makedumpfileDmesg returns `makedumpfile --dump-dmesg` of path: from
// path's basename with .vmcore replaced by .makedumpfile-dmesg.txt if that
// file exists, else by running makedumpfile (skipping if not installed).
func makedumpfileDmesg(t *testing.T, path string) []byte {
	t.Helper()
	saved := path[:len(path)-len(filepath.Ext(path))] + ".makedumpfile-dmesg.txt"
	if b, err := os.ReadFile(saved); err == nil {
		return b
	}
	mdf, err := exec.LookPath("makedumpfile")
	if err != nil {
		t.Skip("makedumpfile not installed")
	}
	out := filepath.Join(t.TempDir(), "dmesg.txt")
	if b, err := exec.Command(mdf, "--dump-dmesg", path, out).CombinedOutput(); err != nil {
		t.Skipf("makedumpfile --dump-dmesg: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDmesgMatchesMakedumpfile(t *testing.T) {
	_, info, tr, path := openReal(t, vmcoretest.Debian61)
	want := makedumpfileDmesg(t, path)
	var got bytes.Buffer
	if err := Dump(&got, tr, info, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := bytes.Split(got.Bytes(), []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := 0; i < len(gl) && i < len(wl); i++ {
			if !bytes.Equal(gl[i], wl[i]) {
				t.Fatalf("line %d differs:\n got %q\nwant %q", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("got %d lines, makedumpfile %d", len(gl), len(wl))
	}
	t.Logf("%d bytes, %d lines identical to makedumpfile --dump-dmesg", got.Len(), bytes.Count(want, []byte("\n")))
}

func TestDmesg73(t *testing.T) {
	_, info, tr, path := openReal(t, vmcoretest.Linux73)
	var got bytes.Buffer
	if err := Dump(&got, tr, info, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got.Bytes(), []byte("Linux version 7.3")) {
		t.Errorf("no Linux version line in the log")
	}
	if !bytes.Contains(got.Bytes(), []byte("] UKDUMP-MARKER ")) {
		t.Errorf("no UKDUMP-MARKER line in the log")
	}
	// makedumpfile 1.7.2 reads the 7.3 log as well (the ring buffer layout
	// is described by VMCOREINFO); compare when it can.
	if mdf, err := exec.LookPath("makedumpfile"); err == nil {
		out := filepath.Join(t.TempDir(), "dmesg.txt")
		if b, err := exec.Command(mdf, "--dump-dmesg", path, out).CombinedOutput(); err != nil {
			t.Logf("makedumpfile cannot read it: %v\n%s", err, b)
		} else if want, err := os.ReadFile(out); err == nil {
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("differs from makedumpfile --dump-dmesg (%d vs %d bytes)", got.Len(), len(want))
			} else {
				t.Logf("identical to makedumpfile --dump-dmesg (%d bytes)", got.Len())
			}
		}
	}
}
