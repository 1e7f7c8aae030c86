package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// idle is the benchmark's floor for peak RSS: this binary started in the
// same crash kernel, its runtime up and nothing read, allocated or
// written, held long enough for the 10 ms VmHWM poll to see it. It
// leaves OUT empty, since every run leaves its output. A Go program's
// peak cannot go below this row's, whatever the collector does.
func idle(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want OUT")
	}
	time.Sleep(100 * time.Millisecond)
	fmt.Println(rssSplit())
	return os.WriteFile(args[0], nil, 0o644)
}

// rssSplit is the process's resident set by kind, from
// /proc/self/status ("rss: VmHWM 6512 kB, RssAnon 3100 kB, ...").
func rssSplit() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "rss: " + err.Error()
	}
	var f []string
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && (k == "VmHWM" || strings.HasPrefix(k, "Rss")) {
			f = append(f, k+" "+strings.TrimSpace(v))
		}
	}
	return "rss: " + strings.Join(f, ", ")
}
