package capture

import (
	"fmt"
	"os"
	"strings"

	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dumpdir"
	"github.com/ukdump/ukdump/pkg/scrub"
)

// ScrubFile is the report in the dump directory of a dump of a machine
// with LUKS volumes under the target: what was overwritten, by kind, as
// "name value" lines after "#" comments (see scrubReport). It never holds
// key material.
const ScrubFile = "scrub.txt"

// scrubInfo is what is said about a scrubber once it is wiped.
type scrubInfo struct {
	patterns uint64
	notes    []string
	err      error // why the dump is not scrubbed although it should be
}

// newScrubber builds the scrubber of the kept keys, or returns nil when
// there is nothing to scrub or the dump keeps the keys (scrub_keys no).
// A scrubber that cannot be built (a key that does not fit its cipher
// spec, which unlocking checked) leaves the dump unscrubbed rather than
// unwritten: it goes to the encrypted volume that key opens.
func newScrubber(d config.Dump, volumes int, env Env) (*scrub.Scrubber, scrubInfo) {
	switch {
	case volumes == 0:
		return nil, scrubInfo{}
	case d.KeepKeys:
		env.Log.Printf("scrub_keys no: the keys of %s stay in the dump", luksVolumes(volumes))
		return nil, scrubInfo{}
	case env.Keys.Len() != volumes:
		err := fmt.Errorf("%d keys kept for %s", env.Keys.Len(), luksVolumes(volumes))
		env.Log.Printf("warning: not scrubbing the volume keys from the dump: %v", err)
		return nil, scrubInfo{err: err}
	}
	s, err := scrub.New(env.Keys.Volumes())
	if err != nil {
		env.Log.Printf("warning: not scrubbing the volume keys from the dump: %v", err)
		return nil, scrubInfo{err: err}
	}
	info := scrubInfo{patterns: s.Patterns().Total(), notes: s.Notes()}
	for _, n := range info.notes {
		env.Log.Printf("scrub: %s", n)
	}
	env.Log.Printf("scrubbing the keys of %s from the dump (%d byte strings)", luksVolumes(volumes), info.patterns)
	return s, info
}

// reportScrub logs the counts and writes ScrubFile. A failure to write it
// is a warning: the dump itself is what matters.
func reportScrub(env Env, dir string, d config.Dump, volumes int, info scrubInfo, res *collector.Result) {
	var counts scrub.Counts
	if res != nil {
		counts = res.Scrubbed
	}
	if !d.KeepKeys && info.err == nil {
		env.Log.Printf("scrubbed from the dump: %s", counts)
	}
	err := dumpdir.WriteFile(dir, ScrubFile, func(f *os.File) error {
		_, err := f.WriteString(scrubReport(d, volumes, info, counts))
		return err
	})
	if err != nil {
		env.Log.Printf("warning: no %s: %v", ScrubFile, err)
	}
}

// scrubReport is ScrubFile's text: "scrub_keys yes|no", "volumes N", then
// when scrubbed "patterns N" (byte strings searched for) and one line per
// kind of scrub.Kinds with the occurrences overwritten ("key 2"), or
// "error <why>" when the dump could not be scrubbed; "note <text>" lines
// say what was not derived (scrub.Scrubber.Notes).
func scrubReport(d config.Dump, volumes int, info scrubInfo, counts scrub.Counts) string {
	var b strings.Builder
	b.WriteString("# ukdump: LUKS volume key material overwritten with zeros in this dump.\n")
	b.WriteString("# Counts only: nothing in this file is key material.\n")
	if d.KeepKeys {
		fmt.Fprintf(&b, "scrub_keys no\nvolumes %d\n", volumes)
		return b.String()
	}
	fmt.Fprintf(&b, "scrub_keys yes\nvolumes %d\n", volumes)
	if info.err != nil {
		fmt.Fprintf(&b, "error %s\n", oneLine(info.err))
		return b.String()
	}
	fmt.Fprintf(&b, "patterns %d\n", info.patterns)
	for _, k := range scrub.Kinds() {
		fmt.Fprintf(&b, "%s %d\n", k, counts[k])
	}
	for _, n := range info.notes {
		fmt.Fprintf(&b, "note %s\n", n)
	}
	return b.String()
}

func luksVolumes(n int) string {
	if n == 1 {
		return "1 LUKS volume"
	}
	return fmt.Sprintf("%d LUKS volumes", n)
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
