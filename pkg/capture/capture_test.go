package capture

import (
	"github.com/ukdump/ukdump/internal/qemuuser"
	"github.com/ukdump/ukdump/internal/vmcoretest"

	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/kmsg"
)

const targetUUID = "12345678-9abc-def0-0123-456789abcdef"

// fakeTarget makes a sysfs and /dev holding vda1, an ext4 filesystem with
// targetUUID.
func fakeTarget(t *testing.T) blockdev.Sys {
	t.Helper()
	root := t.TempDir()
	s := blockdev.Sys{SysDir: filepath.Join(root, "sys"), DevDir: filepath.Join(root, "dev")}
	if err := os.MkdirAll(filepath.Join(s.SysDir, "class", "block", "vda1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.DevDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sb := make([]byte, 4096)
	binary.LittleEndian.PutUint16(sb[1024+56:], 0xEF53)
	copy(sb[1024+104:], []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})
	if err := os.WriteFile(filepath.Join(s.DevDir, "vda1"), sb, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// crashInfo is the VMCOREINFO of the test vmcore. Its CRASHTIME,
// 2024-05-06 07:08:09 UTC, names the dump directory.
const crashInfo = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nCRASHTIME=1714979289\n"

// writeCore writes a synthetic ELF vmcore (vmcoretest.Synthetic).
func writeCore(t *testing.T, name, info string, mem []byte) {
	t.Helper()
	if err := os.WriteFile(name, vmcoretest.Synthetic(info, mem), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mounter fakes Env.Mount: the "mount" makes nothing, so the dump goes
// into the mount directory itself.
type mounter struct {
	err, unmountErr error
	calls           []string
	unmounted       int
}

func (m *mounter) mount(dev, dir, fstype, opts string) (func() error, error) {
	m.calls = append(m.calls, strings.Join([]string{dev, dir, fstype, opts}, " "))
	if m.err != nil {
		return nil, m.err
	}
	return func() error {
		m.unmounted++
		return m.unmountErr
	}, nil
}

// memory is three pages: text, zeros, text.
func memory() []byte {
	mem := make([]byte, 3*4096)
	copy(mem, strings.Repeat("first page ", 300))
	copy(mem[2*4096:], strings.Repeat("third page ", 300))
	return mem
}

// fixture is a crash kernel whose target and vmcore are in place, for a
// test case to break one thing.
type fixture struct {
	cfg   *config.Init
	env   Env
	mnt   *mounter
	log   *bytes.Buffer
	kicks int
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	f := &fixture{
		cfg: &config.Init{
			Target:        config.Target{FSType: "ext4", Spec: "LABEL=dumps", UUID: targetUUID, Options: "noatime"},
			Path:          "/var/crash",
			Hostname:      "host",
			TargetTimeout: config.Duration(5 * time.Second),
			Dump:          config.Dump{Level: 31, Compression: diskdump.Zlib, Format: diskdump.KdumpFormat},
		},
		mnt: &mounter{},
		log: &bytes.Buffer{},
	}
	f.env = Env{
		Log:      kmsg.New(f.log, nil, "test"),
		Sys:      fakeTarget(t),
		Vmcore:   filepath.Join(dir, "vmcore"),
		MountDir: filepath.Join(dir, "mnt"),
		Now:      func() time.Time { return time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) },
		Kick:     func() { f.kicks++ },
		Mount:    f.mnt.mount,
	}
	writeCore(t, f.env.Vmcore, crashInfo, memory())
	return f
}

// TestRunSteps checks that each failure names its step, and that a mounted
// target is unmounted whatever failed.
func TestRunSteps(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	for _, tc := range []struct {
		name      string
		edit      func(t *testing.T, f *fixture)
		step      string
		want      string
		unmounted int
	}{
		{"target never appears", func(t *testing.T, f *fixture) {
			f.cfg.Target.UUID = "00000000-0000-0000-0000-000000000000"
			f.cfg.TargetTimeout = config.Duration(50 * time.Millisecond)
		}, "wait for target", "did not appear within 50ms", 0},
		{"mount fails", func(t *testing.T, f *fixture) {
			f.mnt.err = errors.New("wrong fs type")
		}, "mount target", "as ext4: wrong fs type", 0},
		{"vmcore missing", func(t *testing.T, f *fixture) {
			if err := os.Remove(f.env.Vmcore); err != nil {
				t.Fatal(err)
			}
		}, "open vmcore", "no such file", 1},
		{"dump directory", func(t *testing.T, f *fixture) {
			// A file where the dump directories go.
			if err := os.MkdirAll(filepath.Join(f.env.MountDir, "var"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(f.env.MountDir, "var", "crash"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "create dump directory", "not a directory", 1},
		{"vmcore vanishes", func(t *testing.T, f *fixture) {
			// Without CRASHTIME, Run asks Now while the core is open:
			// reading it goes on, its size cannot be had.
			writeCore(t, f.env.Vmcore, "OSRELEASE=6.1.0-test\n", memory())
			f.env.Now = func() time.Time {
				os.Remove(f.env.Vmcore)
				return time.Now()
			}
		}, "write vmcore", "size of the vmcore", 1},
		{"unmount fails", func(t *testing.T, f *fixture) {
			f.mnt.unmountErr = errors.New("busy")
		}, "unmount target", "busy", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.edit(t, f)
			res, err := Run(t.Context(), f.cfg, f.env)
			var se *StepError
			if !errors.As(err, &se) || se.Step != tc.step || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %+v, %v; want step %q and %q\nlog:\n%s", res, err, tc.step, tc.want, f.log)
			}
			if f.mnt.unmounted != tc.unmounted {
				t.Errorf("unmounted %d times, want %d", f.mnt.unmounted, tc.unmounted)
			}
		})
	}
}

func TestRun(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	f := newFixture(t)
	res, err := Run(t.Context(), f.cfg, f.env)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, f.log)
	}
	wantMount := filepath.Join(f.env.Sys.DevDir, "vda1") + " " + f.env.MountDir + " ext4 noatime"
	if len(f.mnt.calls) != 1 || f.mnt.calls[0] != wantMount || f.mnt.unmounted != 1 {
		t.Errorf("mounts %q, unmounted %d times; want one of %q, unmounted once", f.mnt.calls, f.mnt.unmounted, wantMount)
	}
	// Named after the crash, not after the crash kernel's clock.
	if want := "/var/crash/host-2024-05-06-07:08:09"; res.Dir != want {
		t.Errorf("Dir = %q, want %q", res.Dir, want)
	}
	if f.kicks == 0 {
		t.Error("the watchdog was never kicked")
	}
	dump := filepath.Join(f.env.MountDir, res.Dir, "vmcore")
	if fi, err := os.Stat(dump); err != nil || fi.Size() != res.Bytes {
		t.Fatalf("dump file: %v; Result.Bytes %d", err, res.Bytes)
	}
	d, err := diskdump.OpenFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mem := memory()
	got := make([]byte, 4096)
	for pfn := range 3 {
		if err := d.ReadPage(uint64(pfn), got); err != nil || !bytes.Equal(got, mem[pfn*4096:(pfn+1)*4096]) {
			t.Errorf("pfn %d does not read back: %v", pfn, err)
		}
	}
	// The log has no printk ring, so there is no vmcore-dmesg.txt, which
	// must not stop the dump.
	if !strings.Contains(f.log.String(), "warning: no vmcore-dmesg.txt") {
		t.Errorf("log lacks the dmesg warning:\n%s", f.log)
	}
}

// TestFlushingFile: the dump is flushed every so many bytes, and a failed
// flush is the write's error, so that a target that fails writes ends the
// dump at once instead of letting dirty pages pile up.
func TestFlushingFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "vmcore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flushes, syncs := 0, 0
	var fail error
	w := &FlushingFile{f: f, every: 4096,
		flush: func(int) error { flushes++; return fail },
		sync:  func(int) error { syncs++; return fail }}
	for i, want := range []int{0, 1, 1, 2} {
		if _, err := w.WriteAt(make([]byte, 3000), int64(i)*3000); err != nil {
			t.Fatal(err)
		}
		if flushes != want {
			t.Errorf("after %d bytes: %d flushes, want %d", (i+1)*3000, flushes, want)
		}
	}
	// Every syncEvery-th window is an fdatasync instead.
	for i := range 2 * syncEvery {
		if _, err := w.WriteAt(make([]byte, 4096), 12000+int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if syncs != 2 || flushes+syncs != 2+2*syncEvery {
		t.Errorf("after %d windows: %d fdatasyncs and %d write-behinds, want 2 and %d", 2+2*syncEvery, syncs, flushes, 2*syncEvery)
	}
	fail = syscall.EROFS
	_, err = w.WriteAt(make([]byte, 5000), 1<<20)
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "flushing the dump to the target") {
		t.Errorf("write whose flush fails: %v, want the flush's EROFS", err)
	}
	if err := w.Truncate(0); err != nil {
		t.Error(err)
	}
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Errorf("size %d after Truncate(0)", st.Size())
	}
}

// TestWriteBehind runs the real writeback call on a file: it must succeed
// on a healthy one (the failures are TestFaultWriteErrors', on a disk
// that fails writes).
func TestWriteBehind(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "vmcore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewFlushingFile(f)
	w.every = 1 << 16
	for i := range 8 {
		if _, err := w.WriteAt(bytes.Repeat([]byte{byte(i)}, 1<<16), int64(i)<<16); err != nil {
			t.Fatalf("window %d: %v", i, err)
		}
	}
	if err := writeBehind(-1); !errors.Is(err, syscall.EBADF) {
		t.Errorf("writeBehind on a closed descriptor: %v, want EBADF", err)
	}
}
