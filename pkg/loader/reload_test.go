package loader

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/kexec"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
)

// TestLogonKeysGone: the kernel's saved keys stand in only with the kernel
// transport, a loaded crash kernel and a record of exactly these volumes.
func TestLogonKeysGone(t *testing.T) {
	vols := []Volume{{UUID: "b", Name: "luks-b"}, {UUID: "a", Name: "luks-a"}}
	saved := &State{Volumes: []VolumeState{{UUID: "a", Transport: config.Kernel}, {UUID: "b", Transport: config.Kernel}}}
	loaded := kexec.Status{Supported: true, Loaded: true}
	plan := func(t config.Transport, have ...string) *Plan {
		return &Plan{Transport: t, Volumes: vols, Options: Options{HasLogonKey: func(u string) bool {
			for _, h := range have {
				if h == u {
					return true
				}
			}
			return false
		}}}
	}
	names := func(vs []Volume) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.Name)
		}
		return strings.Join(s, " ")
	}
	initrd := &State{Volumes: []VolumeState{{UUID: "a", Transport: config.Initrd}, {UUID: "b", Transport: config.Initrd}}}
	other := &State{Volumes: []VolumeState{{UUID: "a", Transport: config.Kernel}}}
	reusing := plan(config.Kernel)
	reusing.Options.ReuseKeys = true
	for _, tc := range []struct {
		name string
		p    *Plan
		ks   kexec.Status
		prev *State
		want string
	}{
		{"one key gone", plan(config.Kernel, "b"), loaded, saved, "luks-a"},
		{"all gone", plan(config.Kernel), loaded, saved, "luks-b luks-a"},
		{"all there", plan(config.Kernel, "a", "b"), loaded, saved, ""},
		{"initrd transport", plan(config.Initrd), loaded, saved, ""},
		{"not loaded", plan(config.Kernel), kexec.Status{Supported: true}, saved, ""},
		{"no record", plan(config.Kernel), loaded, nil, ""},
		{"saved by initrd", plan(config.Kernel), loaded, initrd, ""},
		{"other volumes", plan(config.Kernel), loaded, other, ""},
		{"reuse asked", reusing, loaded, saved, ""},
	} {
		if got := names(logonKeysGone(tc.p, tc.ks, tc.prev)); got != tc.want {
			t.Errorf("%s: gone = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReloadFailure(t *testing.T) {
	loaded, none := kexec.Status{Supported: true, Loaded: true}, kexec.Status{Supported: true}
	if got := reloadFailure(loaded, loaded); !strings.Contains(got, "the crash kernel loaded before is still loaded") {
		t.Errorf("kept: %q", got)
	}
	if got := reloadFailure(loaded, none); !strings.Contains(got, "NO crash kernel is loaded now") {
		t.Errorf("dropped: %q", got)
	}
	if got := reloadFailure(none, none); got != "" {
		t.Errorf("nothing was loaded: %q", got)
	}
}

// TestReloadKeepsOld: a reload that fails before the kernel is called
// (here: no kdumpinit) says the old crash kernel is still loaded, and
// leaves its record alone.
func TestReloadKeepsOld(t *testing.T) {
	s := loadertest.New(t, "ext4 UUID="+uuid+"\n")
	s.Kexec(t, true, 256<<20)
	old, _ := json.Marshal(State{Release: "6.1.0-old"})
	loadertest.Write(t, s.StateFile, string(old))
	p, err := Prepare(options(s))
	if err != nil {
		t.Fatal(err)
	}
	p.Build.Init = s.Root + "/missing-kdumpinit"
	var out strings.Builder
	if _, err := Reload(p, &out); err == nil || !strings.Contains(err.Error(), "missing-kdumpinit") {
		t.Errorf("Reload error = %v", err)
	}
	if !strings.Contains(out.String(), "the crash kernel loaded before is still loaded") {
		t.Errorf("output:\n%s", out.String())
	}
	if b, _ := os.ReadFile(s.StateFile); string(b) != string(old) {
		t.Errorf("state changed to %s", b)
	}
}
