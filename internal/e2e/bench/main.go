// Command bench compares "ukdump convert" with the installed makedumpfile
// on one vmcore, side by side in one run: each tool converts the same ELF
// vmcore at the same dump level on one CPU (taskset -c 0), several times,
// and the table shows median wall time, output size and peak RSS. The last
// line is the summary "bench: time_ratio=X size_ratio=Y rss_ratio=Z" of
// ukdump (default compression) divided by makedumpfile -l.
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
	"sort"
	"syscall"
	"time"
)

type tool struct {
	name string
	args func(in, out string) []string
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
	uk := func(c string) tool {
		return tool{"ukdump -c " + c, func(in, out string) []string {
			return []string{ukdump, "convert", "-q", "-d", d, "-c", c, in, out}
		}}
	}
	mdf := func(opt string) tool {
		return tool{"makedumpfile " + opt, func(in, out string) []string {
			return []string{"makedumpfile", opt, "-d", d, in, out}
		}}
	}
	tools := []tool{uk("snappy"), mdf("-l"), uk("lzo"), uk("zstd"), uk("zlib"), mdf("-c")}
	if err := warm(vmcore); err != nil {
		return err
	}
	fmt.Printf("vmcore: %s (%d MiB), dump level %d, %d runs each, one CPU (taskset -c 0)\n\n", vmcore, st.Size()>>20, level, reps)
	fmt.Printf("%-22s %10s %12s %12s\n", "tool", "wall s", "output MiB", "peak RSS MiB")
	medians := map[string]sample{}
	for _, t := range tools {
		var runs []sample
		for i := 0; i < reps; i++ {
			out := filepath.Join(work, "bench-out")
			os.Remove(out)
			s, err := measure(append([]string{"taskset", "-c", "0"}, t.args(vmcore, out)...), out)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			runs = append(runs, s)
			os.Remove(out)
		}
		m := median(runs)
		medians[t.name] = m
		fmt.Printf("%-22s %10.3f %12.1f %12.1f\n", t.name, m.wall.Seconds(), float64(m.size)/(1<<20), float64(m.rss)/1024)
	}
	ours, ref := medians["ukdump -c snappy"], medians["makedumpfile -l"]
	fmt.Printf("\nbench-file: time_ratio=%.2f size_ratio=%.2f rss_ratio=%.2f\n",
		ours.wall.Seconds()/ref.wall.Seconds(), float64(ours.size)/float64(ref.size), float64(ours.rss)/float64(ref.rss))
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
