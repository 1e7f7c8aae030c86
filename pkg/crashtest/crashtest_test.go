package crashtest

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/loader"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
)

// fake is a machine with a fake /proc (an empty sysrq-trigger, sysrq
// disabled for the keyboard) and sysfs: the test writes "c" into a plain
// file and crashes nothing.
type fake struct {
	env     Env
	trigger string
	synced  bool
	out     strings.Builder
}

func newFake(t *testing.T, loaded bool) *fake {
	t.Helper()
	root := t.TempDir()
	f := &fake{}
	f.env = Env{
		ProcDir:   filepath.Join(root, "proc"),
		SysDir:    filepath.Join(root, "sys"),
		StateFile: filepath.Join(root, "state.json"),
		Out:       &f.out,
	}
	f.trigger = filepath.Join(f.env.ProcDir, "sysrq-trigger")
	f.env.Sync = func() {
		if f.written() != "" {
			t.Error("synced after the crash")
		}
		f.synced = true
	}
	loadertest.Write(t, f.trigger, "")
	loadertest.Write(t, filepath.Join(f.env.ProcDir, "sys", "kernel", "sysrq"), "0\n")
	l := "0\n"
	if loaded {
		l = "1\n"
	}
	loadertest.Write(t, filepath.Join(f.env.SysDir, "kernel", "kexec_crash_loaded"), l)
	loadertest.Write(t, filepath.Join(f.env.SysDir, "kernel", "kexec_crash_size"), "268435456\n")
	b, _ := json.Marshal(loader.State{Release: "6.1.0-57-cloud-amd64", Target: "ext4 UUID=u on /dev/vda1", Path: "/crash",
		FinalAction: config.Reboot, FailureAction: config.Halt, LoadedAt: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)})
	loadertest.Write(t, f.env.StateFile, string(b))
	return f
}

func (f *fake) written() string {
	b, _ := os.ReadFile(f.trigger)
	return string(b)
}

// answer is a terminal where a person types s; it checks that nothing was
// written to the trigger before the answer was read.
type answer struct {
	t *testing.T
	f *fake
	r io.Reader
}

func (a *answer) Read(p []byte) (int, error) {
	if a.f.written() != "" {
		a.t.Error("the trigger was written before the confirmation was read")
	}
	return a.r.Read(p)
}

func (f *fake) typed(t *testing.T, s string) {
	f.env.Terminal = true
	f.env.In = &answer{t: t, f: f, r: strings.NewReader(s)}
}

// TestCrash: "c" reaches the trigger after the confirmation or with
// --yes, after a sync, and never otherwise; the sysrq sysctl is left alone.
func TestCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		loaded bool
		input  *string
		yes    bool
		crash  bool
		err    string
	}{
		{"confirmed", true, ptr("yes\n"), false, true, ""},
		{"yes flag without a terminal", true, nil, true, true, ""},
		{"yes flag on a terminal", true, ptr(""), true, true, ""},
		{"answered no", true, ptr("no\n"), false, false, ErrNotConfirmed.Error()},
		{"answered Yes", true, ptr("Yes\n"), false, false, ErrNotConfirmed.Error()},
		{"no answer", true, ptr(""), false, false, ErrNotConfirmed.Error()},
		{"no terminal", true, nil, false, false, "standard input is not a terminal, where the crash could be confirmed: run ukdump test --yes"},
		{"not loaded", false, ptr("yes\n"), true, false, "no crash kernel loaded: run ukdump load (or systemctl start ukdump)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.loaded)
			if tc.input != nil {
				f.typed(t, *tc.input)
			}
			err := Run(f.env, tc.yes)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Run = %v, want %q", err, tc.err)
			}
			want := ""
			if tc.crash {
				want = "c"
			}
			if got := f.written(); got != want || f.synced != tc.crash {
				t.Errorf("trigger holds %q, synced %v; want %q", got, f.synced, want)
			}
			if b, _ := os.ReadFile(filepath.Join(f.env.ProcDir, "sys", "kernel", "sysrq")); string(b) != "0\n" {
				t.Errorf("kernel.sysrq changed to %q", b)
			}
		})
	}
}

// TestDescribe: before asking, the test says what the crash will do.
func TestDescribe(t *testing.T) {
	f := newFake(t, true)
	f.typed(t, "no\n")
	if err := Run(f.env, false); !errors.Is(err, ErrNotConfirmed) {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ukdump test crashes this machine NOW, on purpose",
		"the crash kernel 6.1.0-57-cloud-amd64 (loaded 2026-05-01 10:00:00 UTC) boots in the 256 MiB reserved for it",
		"it writes a dump to /crash/<host>-<date>/ on ext4 UUID=u on /dev/vda1",
		"then it takes final_action reboot (failure_action halt if the dump fails)",
		`Type "yes" to crash this machine now: `,
	} {
		if !strings.Contains(f.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, f.out.String())
		}
	}
}

// TestRefusals: no kexec, no trigger: refused, before asking anything.
func TestRefusals(t *testing.T) {
	f := newFake(t, true)
	if err := os.Remove(f.trigger); err != nil {
		t.Fatal(err)
	}
	if err := Run(f.env, true); err == nil || !strings.Contains(err.Error(), "CONFIG_MAGIC_SYSRQ") {
		t.Errorf("without a trigger: %v", err)
	}
	f = newFake(t, true)
	if err := os.RemoveAll(filepath.Join(f.env.SysDir, "kernel")); err != nil {
		t.Fatal(err)
	}
	if err := Run(f.env, true); err == nil || !strings.Contains(err.Error(), "this kernel cannot load a crash kernel") || f.written() != "" {
		t.Errorf("without kexec: %v, trigger %q", err, f.written())
	}
	if f.out.Len() != 0 {
		t.Errorf("a refusal described a crash: %q", f.out.String())
	}
}

func ptr(s string) *string { return &s }
