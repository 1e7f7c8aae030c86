package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.conf")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: ukdump"},
		{[]string{"frob"}, 2, `unknown command "frob"`},
		{[]string{"load", "extra"}, 2, "unexpected arguments"},
		{[]string{"load", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"mkinitrd"}, 2, "-o FILE is required"},
		{[]string{"help"}, 0, "commands:"},
		{[]string{"load", "--config", missing}, 1, "ukdump load: config: open " + missing},
		{[]string{"mkinitrd", "-o", "/dev/null", "--config", missing}, 1, "no such file"},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
			t.Errorf("ukdump %q = %d, %q; want %d and %q", tc.args, code, out.String()+errOut.String(), tc.code, tc.want)
		}
	}
}

func TestOfflineUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"convert", "only-one"}, 2, "want 2 file arguments, have 1"},
		{[]string{"info"}, 2, "want 1 file arguments, have 0"},
		{[]string{"convert", "-c", "lz4", "in", "out"}, 1, `compression "lz4"`},
		{[]string{"convert", "-d", "99", "in", "out"}, 1, "dump_level 99"},
		{[]string{"info", "/nonexistent/vmcore"}, 1, "no such file"},
		{[]string{"dmesg", "main.go"}, 1, "ukdump dmesg:"},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("ukdump %q = %d, %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// TestConvertInfoDmesg runs the offline verbs on a vmcore from a real crash
// (UKDUMP_TEST_VMCORE, set by make test).
func TestConvertInfoDmesg(t *testing.T) {
	in := os.Getenv("UKDUMP_TEST_VMCORE")
	if in == "" {
		t.Skip("UKDUMP_TEST_VMCORE not set")
	}
	out := filepath.Join(t.TempDir(), "dump")
	var o, e bytes.Buffer
	if code := run([]string{"convert", "-q", "-d", "31", "-c", "zlib", in, out}, &o, &e); code != 0 {
		t.Fatalf("convert: %d %s", code, e.String())
	}
	if !strings.Contains(o.String(), "pages written") {
		t.Errorf("convert summary: %q", o.String())
	}
	o.Reset()
	if code := run([]string{"info", out}, &o, &e); code != 0 {
		t.Fatalf("info: %d %s", code, e.String())
	}
	for _, want := range []string{"format:        kdump", "dump level:    31", "compression:   zlib", "kernel:        6."} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("info lacks %q:\n%s", want, o.String())
		}
	}
	var fromDump, fromELF bytes.Buffer
	if code := run([]string{"dmesg", out}, &fromDump, &e); code != 0 {
		t.Fatalf("dmesg: %d %s", code, e.String())
	}
	if code := run([]string{"dmesg", in}, &fromELF, &e); code != 0 {
		t.Fatalf("dmesg: %d %s", code, e.String())
	}
	if fromDump.Len() == 0 || fromDump.String() != fromELF.String() {
		t.Error("dmesg of the converted dump differs from the source's")
	}
}
