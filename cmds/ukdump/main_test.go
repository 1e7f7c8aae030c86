package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/internal/vmcoretest"
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

// TestUsage checks the overall usage: on request to stdout with exit 0,
// after a mistake to stderr with exit 2, and listing every verb.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"--help"}, 0},
		{nil, 2},
		{[]string{"frob"}, 2},
		{[]string{"help", "frob"}, 2},
		{[]string{"help", "info", "convert"}, 2},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		got, other := out.String(), errOut.String()
		if tc.code != 0 {
			got, other = other, got
		}
		if code != tc.code || other != "" {
			t.Errorf("ukdump %q = %d, stdout %q, stderr %q; want %d and the usage on one of them only", tc.args, code, out.String(), errOut.String(), tc.code)
			continue
		}
		for _, want := range []string{"usage: ukdump <command>", "Exit status: 0 success, 1 failure, 2 usage error",
			"  load ", "  reload ", "  unload ", "  status ", "  test ", "  estimate ", "  setup-crypttab ", "  mkinitrd ", "  convert ", "  dmesg ", "  info ", "  help "} {
			if !strings.Contains(got, want) {
				t.Errorf("ukdump %q: usage lacks %q:\n%s", tc.args, want, got)
			}
		}
	}
}

// TestVerbHelp checks each verb's "-h" and "help VERB": to stdout with exit
// 0, a synopsis naming the positional arguments, and the verb's own flags
// and no other, in the synopsis and in the list. Wrong numbers of
// arguments are usage errors that show the synopsis.
func TestVerbHelp(t *testing.T) {
	cases := []struct {
		verb  string
		flags []string
		args  []string
	}{
		{"load", []string{"config", "init", "kernel", "kernel-config", "key-file", "modules", "reuse-keys", "state"}, nil},
		{"reload", []string{"config", "init", "kernel", "kernel-config", "key-file", "modules", "reuse-keys", "state"}, nil},
		{"unload", []string{"forget-keys", "state"}, nil},
		{"status", []string{"config", "loaded-kernel", "state"}, nil},
		{"test", []string{"state", "yes"}, nil},
		{"estimate", []string{"config", "init", "kernel", "kernel-config", "modules"}, nil},
		{"setup-crypttab", []string{"config", "crypttab", "init", "kernel", "kernel-config", "modules", "remove", "yes"}, nil},
		{"mkinitrd", []string{"config", "init", "kernel", "kernel-config", "modules", "o"}, nil},
		{"convert", []string{"c", "d", "elf", "q"}, []string{"IN", "OUT"}},
		{"dmesg", nil, []string{"DUMP"}},
		{"info", nil, []string{"DUMP"}},
	}
	var verbs []string
	for _, c := range commands() {
		verbs = append(verbs, c.name)
	}
	for i, tc := range cases {
		if i >= len(verbs) || verbs[i] != tc.verb {
			t.Fatalf("verbs %q; this test knows %+v", verbs, cases)
		}
	}
	for _, tc := range cases {
		t.Run(tc.verb, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run([]string{tc.verb, "-h"}, &out, &errOut); code != 0 || errOut.Len() != 0 {
				t.Fatalf("-h = %d, stderr %q; want 0 and nothing", code, errOut.String())
			}
			help := out.String()
			var viaHelp bytes.Buffer
			if code := run([]string{"help", tc.verb}, &viaHelp, &errOut); code != 0 || viaHelp.String() != help {
				t.Errorf("help %s = %d:\n%s\nwant what -h shows:\n%s", tc.verb, code, viaHelp.String(), help)
			}

			// The flag list: "  -name VALUE" (or "  -x\tusage") lines.
			values := map[string]string{}
			var listed []string
			for line := range strings.Lines(help) {
				if rest, ok := strings.CutPrefix(line, "  -"); ok {
					head, _, _ := strings.Cut(rest, "\t")
					f := strings.Fields(head)
					listed = append(listed, f[0])
					values[f[0]] = strings.Join(f[1:], " ")
				}
			}
			if !slices.Equal(listed, tc.flags) {
				t.Errorf("-h lists flags %q, want %q:\n%s", listed, tc.flags, help)
			}

			// The synopsis: "ukdump VERB", the flags with their values, the arguments.
			first, _, _ := strings.Cut(help, "\n")
			syn := strings.Fields(strings.NewReplacer("[", "", "]", "").Replace(strings.TrimPrefix(first, "usage: ")))
			if len(syn) < 2 || syn[0] != "ukdump" || syn[1] != tc.verb {
				t.Fatalf("synopsis %q", first)
			}
			var inSynopsis []string
			rest := syn[2:]
			for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
				name := rest[0][1:]
				inSynopsis = append(inSynopsis, name)
				rest = rest[1:]
				if v := values[name]; v != "" {
					if len(rest) == 0 || rest[0] != v {
						t.Errorf("synopsis %q: -%s without its value %s", first, name, v)
						continue
					}
					rest = rest[1:]
				}
			}
			slices.Sort(inSynopsis)
			if !slices.Equal(inSynopsis, tc.flags) {
				t.Errorf("synopsis %q has flags %q, want %q", first, inSynopsis, tc.flags)
			}
			if !slices.Equal(rest, tc.args) {
				t.Errorf("synopsis %q ends in %q, want the arguments %q", first, rest, tc.args)
			}

			for _, n := range []int{len(tc.args) - 1, len(tc.args) + 1} {
				if n < 0 {
					continue
				}
				args := append([]string{tc.verb}, slices.Repeat([]string{"x"}, n)...)
				out.Reset()
				errOut.Reset()
				if code := run(args, &out, &errOut); code != 2 || out.Len() != 0 || !strings.Contains(errOut.String(), first) {
					t.Errorf("ukdump %q = %d, stdout %q, stderr %q; want 2 and the synopsis on stderr", args, code, out.String(), errOut.String())
				}
			}
		})
	}
}

func TestOfflineUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"convert", "only-one"}, 2, "want 2 arguments (IN OUT), have 1"},
		{[]string{"info"}, 2, "want 1 argument (DUMP), have 0"},
		{[]string{"convert", "-c", "lz4", "in", "out"}, 2, `compression "lz4" is not snappy, lzo, zstd, zlib or none`},
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

// TestConvertInfoDmesg runs the offline verbs on vmcores from real crashes
// (set by make test): x86_64's, and arm64's on this host of another
// machine.
func TestConvertInfoDmesg(t *testing.T) {
	for _, env := range []string{vmcoretest.Debian61, vmcoretest.Linux73ARM64} {
		t.Run(env, func(t *testing.T) { convertInfoDmesg(t, vmcoretest.Path(t, env)) })
	}
}

func convertInfoDmesg(t *testing.T, in string) {
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
	for _, want := range []string{"format:        kdump", "dump level:    31", "compression:   zlib", "kernel:        "} {
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

// TestExitStatus: a verb whose output has said why it fails ends with its
// code and nothing on stderr.
func TestExitStatus(t *testing.T) {
	c := command{name: "check", synopsis: "ukdump check", run: func(c *call) error {
		fmt.Fprintln(c.stdout, "not ready: no crash kernel loaded")
		return exitStatus(exitFailure)
	}}
	var out, errOut bytes.Buffer
	if code := c.execute(nil, &out, &errOut); code != 1 || errOut.Len() != 0 || out.String() != "not ready: no crash kernel loaded\n" {
		t.Errorf("execute = %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
