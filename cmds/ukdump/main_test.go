package main

import (
	"bytes"
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
