// Command bench compares "ukdump convert" with the installed makedumpfile
// on one vmcore, side by side in one run: each tool converts the same ELF
// vmcore at the same dump level on one CPU (taskset -c 0), several times,
// then on every CPU of the host (ukdump compresses on each; makedumpfile
// -l alone and with --num-threads), and the table shows median wall time,
// output size and peak RSS. The summary lines "bench-file: time_ratio=X
// size_ratio=Y rss_ratio=Z" (one CPU) and "bench-file-smp: cpus=N ..."
// divide ukdump (default compression) by makedumpfile -l (on N CPUs, by
// the faster of its two modes).
//
// Test-only tooling, run by "make bench".
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type tool struct {
	name string
	cpus int
	args func(in, out string) []string
	// flaky: a failed run is counted and left out instead of ending the
	// benchmark (Debian 12's makedumpfile --num-threads aborts now and
	// then).
	flaky bool
}

type sample struct {
	wall time.Duration
	size int64
	rss  int64 // KiB
}

func main() {
	vmcore := flag.String("vmcore", "", "ELF vmcore to convert")
	ukdump := flag.String("ukdump", "bin/ukdump", "ukdump binary")
	reps := flag.Int("reps", 5, "repetitions per tool")
	level := flag.Int("d", 31, "dump level")
	work := flag.String("work", os.TempDir(), "directory for the outputs")
	crashDir := flag.String("crash", "", "print the crash-kernel benchmark TestBenchCrash left in this directory")
	flag.Parse()
	if *crashDir != "" {
		if err := crash(*crashDir); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*vmcore, *ukdump, *work, *reps, *level); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(vmcore, ukdump, work string, reps, level int) error {
	if vmcore == "" {
		return fmt.Errorf("-vmcore is required")
	}
	st, err := os.Stat(vmcore)
	if err != nil {
		return err
	}
	d := fmt.Sprint(level)
	uk := func(c string, cpus int) tool {
		return tool{name: "ukdump -c " + c, cpus: cpus, args: func(in, out string) []string {
			return []string{ukdump, "convert", "-q", "-d", d, "-c", c, in, out}
		}}
	}
	mdf := func(cpus int, opts ...string) tool {
		return tool{name: "makedumpfile " + strings.Join(opts, " "), cpus: cpus, args: func(in, out string) []string {
			return append(append([]string{"makedumpfile"}, opts...), "-d", d, in, out)
		}}
	}
	tools := []tool{uk("snappy", 1), mdf(1, "-l"), uk("lzo", 1), uk("zstd", 1), uk("zlib", 1), mdf(1, "-c")}
	n := runtime.NumCPU()
	if n > 1 {
		threads := mdf(n, "-l", "--num-threads", strconv.Itoa(n))
		threads.flaky = true
		tools = append(tools, uk("snappy", n), mdf(n, "-l"), threads)
	}
	if err := warm(vmcore); err != nil {
		return err
	}
	fmt.Printf("vmcore: %s (%d MiB), dump level %d, %d runs each, on CPU 0 (taskset -c 0), then on CPUs 0-%d\n\n", vmcore, st.Size()>>20, level, reps, n-1)
	fmt.Printf("%-34s %4s %10s %12s %12s\n", "tool", "CPUs", "wall s", "output MiB", "peak RSS MiB")
	medians := map[string]sample{}
	for _, t := range tools {
		var runs []sample
		failed := 0
		for i := 0; i < reps; i++ {
			out := filepath.Join(work, "bench-out")
			os.Remove(out)
			s, err := measure(append([]string{"taskset", "-c", fmt.Sprintf("0-%d", t.cpus-1)}, t.args(vmcore, out)...), out)
			os.Remove(out)
			if err != nil && t.flaky {
				failed++
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			runs = append(runs, s)
		}
		note := ""
		if failed > 0 {
			note = fmt.Sprintf("  (%d of %d runs failed)", failed, reps)
		}
		if len(runs) == 0 {
			fmt.Printf("%-34s %4d %10s%s\n", t.name, t.cpus, "failed", note)
			continue
		}
		m := median(runs)
		medians[fmt.Sprintf("%s/%d", t.name, t.cpus)] = m
		fmt.Printf("%-34s %4d %10.3f %12.1f %12.1f%s\n", t.name, t.cpus, m.wall.Seconds(), float64(m.size)/(1<<20), float64(m.rss)/1024, note)
	}
	ratios := func(ours, ref sample) string {
		return fmt.Sprintf("time_ratio=%.2f size_ratio=%.2f rss_ratio=%.2f",
			ours.wall.Seconds()/ref.wall.Seconds(), float64(ours.size)/float64(ref.size), float64(ours.rss)/float64(ref.rss))
	}
	fmt.Printf("\nbench-file: %s\n", ratios(medians["ukdump -c snappy/1"], medians["makedumpfile -l/1"]))
	if n > 1 {
		ref := medians[fmt.Sprintf("makedumpfile -l/%d", n)]
		if th, ok := medians[fmt.Sprintf("makedumpfile -l --num-threads %d/%d", n, n)]; ok && th.wall < ref.wall {
			ref = th
		}
		fmt.Printf("bench-file-smp: cpus=%d %s\n", n, ratios(medians[fmt.Sprintf("ukdump -c snappy/%d", n)], ref))
	}
	return nil
}

// warm reads the vmcore once so both tools find it in the page cache.
func warm(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

func measure(argv []string, out string) (sample, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = io.Discard
	cmd.Stdout = io.Discard
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("%v: %w", argv, err)
	}
	wall := time.Since(start)
	st, err := os.Stat(out)
	if err != nil {
		return sample{}, err
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return sample{wall: wall, size: st.Size(), rss: ru.Maxrss}, nil
}

// median takes the median of each figure on its own.
func median(s []sample) sample {
	walls := make([]time.Duration, len(s))
	sizes := make([]int64, len(s))
	rsss := make([]int64, len(s))
	for i, x := range s {
		walls[i], sizes[i], rsss[i] = x.wall, x.size, x.rss
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	sort.Slice(rsss, func(i, j int) bool { return rsss[i] < rsss[j] })
	m := len(s) / 2
	return sample{wall: walls[m], size: sizes[m], rss: rsss[m]}
}
