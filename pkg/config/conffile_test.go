package config

import (
	"os"
	"strings"
	"testing"
)

// TestShippedConfFile holds the packages' /etc/ukdump.conf to the grammar:
// every directive is there, commented out, and with the comment marks
// removed the file parses to the defaults, so the file cannot drift from
// the table of directives.
func TestShippedConfFile(t *testing.T) {
	b, err := os.ReadFile("../../packaging/ukdump.conf")
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	found := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		// "#word ..." is a directive commented out; "# ..." is prose.
		if !strings.HasPrefix(line, "#") || strings.HasPrefix(line, "# ") || line == "#" {
			if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
				t.Errorf("live line %q: the shipped file sets nothing", line)
			}
			continue
		}
		d := strings.TrimPrefix(line, "#")
		key := strings.Fields(d)[0]
		if KnownFS(key) {
			key = "target"
		}
		found[key] = true
		live = append(live, d)
	}
	for _, d := range directives() {
		if !found[d.name] {
			t.Errorf("directive %s is missing from packaging/ukdump.conf", d.name)
		}
	}
	got, err := Parse(strings.NewReader(strings.Join(live, "\n")))
	if err != nil {
		t.Fatalf("packaging/ukdump.conf with its directives uncommented: %v", err)
	}
	if got.Path != DefaultPath || got.FailureAction != Reboot || got.FinalAction != Reboot ||
		got.TargetTimeout != DefaultTargetTimeout || got.KeyTransport != Auto ||
		got.Dump != (Dump{Level: DefaultDumpLevel, Compression: DefaultCompression, Format: DefaultFormat}) {
		t.Errorf("packaging/ukdump.conf's values are not the defaults: %+v", *got)
	}
}
