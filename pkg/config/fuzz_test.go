package config

import (
	"bufio"
	"errors"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var lineError = regexp.MustCompile(`^line ([0-9]+): `)

// FuzzParse: Parse never panics; an error names a line of the input (or
// is the scanner's, for a line too long to read); a configuration it
// accepts is one kdumpinit can honour, and comments and blank lines around
// it change nothing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "\n", "# only a comment\n", "ext4 UUID=0a1b2c3d-0000-4000-8000-000000000001\n",
		"xfs LABEL=dump\npath /var/crash/\nfailure_action halt\nfinal_action poweroff\n",
		"default shell\n", "disk_timeout 0\n", "target_timeout 30\ndisk_timeout 30\n",
		"core_collector makedumpfile -l --message-level 1 -d 31\n", "core_collector makedumpfile -c -E -d 1\n",
		"dump_level 17\ncompression zstd\nformat elf\n", "extra_modules nvme ahci\ncmdline_append a=b c\n",
		"key_transport kernel\n", "path relative\n", "ext4 /dev/vda1 x\n", "nfs host:/x\n", "\x00\t\r\n#\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in))
		if err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return
			}
			m := lineError.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("Parse(%q): error %q names no line", in, err)
			}
			n, _ := strconv.Atoi(m[1])
			if n < 1 || n > strings.Count(in, "\n")+1 {
				t.Fatalf("Parse(%q): error %q names a line the input does not have", in, err)
			}
			return
		}
		checkParsed(t, in, c)
		// Comments and blank lines are not directives.
		c2, err := Parse(strings.NewReader("# a comment\n\n" + in + "\n  # another\n"))
		if err != nil {
			t.Fatalf("Parse(%q) accepted, with comments around refused: %v", in, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("Parse(%q) = %+v, with comments around %+v", in, c, c2)
		}
	})
}

// checkParsed fails unless c is a configuration kdumpinit can take.
func checkParsed(t *testing.T, in string, c *File) {
	t.Helper()
	if !path.IsAbs(c.Path) || path.Clean(c.Path) != c.Path {
		t.Fatalf("Parse(%q): path %q is not absolute and clean", in, c.Path)
	}
	for _, a := range []Action{c.FailureAction, c.FinalAction} {
		if _, err := ParseAction(string(a)); err != nil {
			t.Fatalf("Parse(%q): action %q: %v", in, a, err)
		}
	}
	if c.TargetTimeout <= 0 || c.TargetTimeout > MaxTargetTimeout*time.Second {
		t.Fatalf("Parse(%q): target_timeout %s out of range", in, c.TargetTimeout)
	}
	if err := c.Dump.Validate(); err != nil {
		t.Fatalf("Parse(%q): %v", in, err)
	}
	if _, err := ParseTransport(string(c.KeyTransport)); err != nil {
		t.Fatalf("Parse(%q): key_transport: %v", in, err)
	}
	if c.HasTarget() {
		if !KnownFS(c.Target.FSType) || !validSpec(c.Target.Spec) {
			t.Fatalf("Parse(%q): target %+v", in, c.Target)
		}
		want := ""
		if u, ok := strings.CutPrefix(c.Target.Spec, "UUID="); ok {
			want = strings.ToLower(u)
		}
		if c.Target.UUID != want {
			t.Fatalf("Parse(%q): target %+v: UUID does not match the spec", in, c.Target)
		}
	}
	for _, list := range [][]string{c.ExtraModules, c.CmdlineAppend} {
		for _, w := range list {
			if w == "" || strings.ContainsAny(w, " \t\n#") {
				t.Fatalf("Parse(%q): list item %q is not one word", in, w)
			}
		}
	}
}
