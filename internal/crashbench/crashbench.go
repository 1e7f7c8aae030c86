// Package crashbench is test-only code shared by the benchmark's crash
// kernel init (internal/e2e/crashinit), the host test that builds and boots
// it (internal/e2e/crashbench_test.go) and the program that prints its
// figures (internal/e2e/bench): what the crash kernel is asked to run, and
// the lines it answers with.
package crashbench

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ConfigPath is where the host test puts the Config in the crash initramfs.
const ConfigPath = "/etc/crashbench.json"

// Config is what the crash kernel runs.
type Config struct {
	// Modules are .ko files to load first, in order.
	Modules []string
	// Disks are mounted (ext4) before the runs.
	Disks []Disk
	// Runs are timed Reps times each, alternating.
	Runs []Run
	Reps int
	// Extra run once each after the timed runs, outside the table (CPU
	// profiles).
	Extra []Run
}

// Disk is an output filesystem.
type Disk struct{ Dev, Dir string }

// Run is one tool invocation.
type Run struct {
	Name string
	// CPUs the child may use (affinity to CPUs 0..CPUs-1, as taskset).
	CPUs int
	Argv []string
	// Out is the file the run writes; it is removed before each run.
	Out string
}

// Prefix starts every line the crash kernel prints for the host.
const Prefix = "CRASHBENCH "

// Result is one timed run.
type Result struct {
	Kind string // "result" (timed) or "extra"
	Name string
	CPUs int
	Rep  int
	// Wall is from the start of the child to its exit plus the sync of
	// its output filesystem; Ran without the sync.
	Wall, Ran, User, Sys float64 // seconds
	// RSSKiB is the peak resident set (VmHWM); AnonKiB the peak of its
	// anonymous part (RssAnon, polled): the memory the run itself took,
	// where the rest is its program's file pages, which in a crash kernel
	// are the initramfs's, in memory whether mapped or not.
	RSSKiB, AnonKiB int64
	Size            int64
	// Kept is the number of dumpable pages in the output (bitmap 2).
	Kept uint64
}

// Line formats r as the crash kernel prints it (without Prefix).
func (r Result) Line() string {
	return fmt.Sprintf("%s name=%q cpus=%d rep=%d wall=%.4f ran=%.4f user=%.3f sys=%.3f rss_kib=%d anon_kib=%d size=%d kept=%d",
		r.Kind, r.Name, r.CPUs, r.Rep, r.Wall, r.Ran, r.User, r.Sys, r.RSSKiB, r.AnonKiB, r.Size, r.Kept)
}

// anon_kib is optional: consoles kept from before it was printed parse too.
var resultLine = regexp.MustCompile(`CRASHBENCH (result|extra) name="([^"]*)" cpus=(\d+) rep=(\d+) wall=([\d.]+) ran=([\d.]+) user=([\d.]+) sys=([\d.]+) rss_kib=(\d+)(?: anon_kib=(\d+))? size=(\d+) kept=(\d+)`)

// Parse reads the result lines of a console log.
func Parse(console string) []Result {
	var out []Result
	for _, m := range resultLine.FindAllStringSubmatch(console, -1) {
		f := func(i int) float64 { v, _ := strconv.ParseFloat(m[i], 64); return v }
		n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
		out = append(out, Result{Kind: m[1], Name: m[2], CPUs: int(n(3)), Rep: int(n(4)),
			Wall: f(5), Ran: f(6), User: f(7), Sys: f(8), RSSKiB: n(9), AnonKiB: n(10), Size: n(11), Kept: uint64(n(12))})
	}
	return out
}

// Summary is the median of each figure of one tool's timed runs.
type Summary struct {
	Name             string
	CPUs             int
	Runs             int
	Wall, User, Sys  float64
	RSSKiB, AnonKiB  int64
	Size             int64
	Kept             uint64
	WallMin, WallMax float64
}

// Summarize groups the timed results by name and CPUs, in their first
// order.
func Summarize(rs []Result) []Summary {
	var order []string
	by := map[string][]Result{}
	for _, r := range rs {
		if r.Kind != "result" {
			continue
		}
		key := fmt.Sprintf("%s/%d", r.Name, r.CPUs)
		if _, ok := by[key]; !ok {
			order = append(order, key)
		}
		by[key] = append(by[key], r)
	}
	var out []Summary
	for _, key := range order {
		g := by[key]
		med := func(get func(Result) float64) float64 {
			v := make([]float64, len(g))
			for i, r := range g {
				v[i] = get(r)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		s := Summary{Name: g[0].Name, CPUs: g[0].CPUs, Runs: len(g),
			Wall:    med(func(r Result) float64 { return r.Wall }),
			User:    med(func(r Result) float64 { return r.User }),
			Sys:     med(func(r Result) float64 { return r.Sys }),
			RSSKiB:  int64(med(func(r Result) float64 { return float64(r.RSSKiB) })),
			AnonKiB: int64(med(func(r Result) float64 { return float64(r.AnonKiB) })),
			Size:    int64(med(func(r Result) float64 { return float64(r.Size) })),
			Kept:    uint64(med(func(r Result) float64 { return float64(r.Kept) })),
		}
		s.WallMin, s.WallMax = g[0].Wall, g[0].Wall
		for _, r := range g {
			s.WallMin, s.WallMax = min(s.WallMin, r.Wall), max(s.WallMax, r.Wall)
		}
		out = append(out, s)
	}
	return out
}

// Start is the line that opens the runs: the vmcore's size and the crash
// kernel's CPUs and memory.
var Start = regexp.MustCompile(`CRASHBENCH start vmcore=(\d+) cpus=(\d+) memtotal_kib=(\d+)`)

// RunFailed starts the line of a run that failed (after Prefix); the
// others go on.
const RunFailed = "run failed:"

// RunFailures returns the lines of the runs that failed.
func RunFailures(console string) []string {
	var out []string
	for _, l := range strings.Split(console, "\n") {
		if i := strings.Index(l, Prefix+RunFailed); i >= 0 {
			out = append(out, strings.TrimSpace(l[i+len(Prefix):]))
		}
	}
	return out
}

// Failed finds the crash kernel's error, if any.
func Failed(console string) (string, bool) {
	i := strings.Index(console, Prefix+"FAILED: ")
	if i < 0 {
		return "", false
	}
	return console[i:], true
}
