package crashbench

import "testing"

func TestParseSummarize(t *testing.T) {
	var console string
	for i, w := range []float64{3, 1, 2} {
		for _, r := range []Result{
			{Kind: "result", Name: "makedumpfile -l", CPUs: 1, Rep: i, Wall: 2 * w, RSSKiB: 4000, Size: 100, Kept: 7},
			{Kind: "result", Name: "makedumpfile -l", CPUs: 2, Rep: i, Wall: w + 10, RSSKiB: 4100, Size: 100, Kept: 7},
			{Kind: "result", Name: "ukdump", CPUs: 1, Rep: i, Wall: w, User: 0.5, RSSKiB: 3000 + int64(i), AnonKiB: 900 + 10*int64(i), Size: 90, Kept: 7},
		} {
			console += "[    1.0] noise\n" + Prefix + r.Line() + "\n"
		}
	}
	console += Prefix + (Result{Kind: "extra", Name: "ukdump", CPUs: 1, Wall: 99}).Line() + "\n"
	rs := Parse(console)
	if len(rs) != 10 || rs[9].Kind != "extra" || rs[2].User != 0.5 {
		t.Fatalf("parsed %d results: %+v", len(rs), rs)
	}
	s := Summarize(rs)
	if len(s) != 3 {
		t.Fatalf("%d summaries, want 3 (by name and CPUs): %+v", len(s), s)
	}
	want := []Summary{
		{Name: "makedumpfile -l", CPUs: 1, Runs: 3, Wall: 4, RSSKiB: 4000, Size: 100, Kept: 7, WallMin: 2, WallMax: 6},
		{Name: "makedumpfile -l", CPUs: 2, Runs: 3, Wall: 12, RSSKiB: 4100, Size: 100, Kept: 7, WallMin: 11, WallMax: 13},
		{Name: "ukdump", CPUs: 1, Runs: 3, Wall: 2, User: 0.5, RSSKiB: 3001, AnonKiB: 910, Size: 90, Kept: 7, WallMin: 1, WallMax: 3},
	}
	for i := range want {
		if s[i] != want[i] {
			t.Errorf("summary %d:\n got %+v\nwant %+v", i, s[i], want[i])
		}
	}
	if _, failed := Failed(console); failed {
		t.Error("Failed on a console without failure")
	}
	if msg, failed := Failed(console + Prefix + "FAILED: boom\n"); !failed || msg != Prefix+"FAILED: boom\n" {
		t.Errorf("Failed: %q %v", msg, failed)
	}
}

// A line printed before anon_kib was (a console kept in the cache) parses,
// with no anonymous peak.
func TestParseWithoutAnon(t *testing.T) {
	rs := Parse(Prefix + `result name="ukdump" cpus=1 rep=0 wall=1.0000 ran=0.9000 user=0.500 sys=0.100 rss_kib=6500 size=100 kept=7` + "\n")
	if len(rs) != 1 || rs[0].RSSKiB != 6500 || rs[0].AnonKiB != 0 || rs[0].Size != 100 || rs[0].Kept != 7 {
		t.Fatalf("Parse = %+v", rs)
	}
}

// The lines of failed runs are found among the console's other lines, as
// the crash kernel prints them.
func TestRunFailures(t *testing.T) {
	console := "noise\r\n" + Prefix + "result name=\"a\" cpus=1 rep=0\n[ 1.0] " + Prefix + RunFailed + " \"b\" cpus=2: signal: aborted\r\n"
	got := RunFailures(console)
	if len(got) != 1 || got[0] != RunFailed+` "b" cpus=2: signal: aborted` {
		t.Errorf("RunFailures = %q", got)
	}
}
