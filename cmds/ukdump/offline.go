package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// The verbs that read dumps on any host: convert, dmesg, info.

// convertOpts are convert's flags.
type convertOpts struct {
	level int
	comp  diskdump.Compression
	elf   bool
	quiet bool
}

func dmesg(dump string, stdout io.Writer) error {
	return collector.DmesgFile(dump, stdout)
}

func info(dump string, stdout io.Writer) error {
	i, err := collector.FileInfo(dump)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, i)
	return nil
}

func convert(in, out string, o convertOpts, stdout, stderr io.Writer) error {
	d := config.Dump{Level: o.level, Compression: o.comp, Format: diskdump.KdumpFormat}
	if o.elf {
		d.Format = diskdump.ELFFormat
	}
	if err := d.Validate(); err != nil {
		return err
	}
	core, err := vmcore.Open(in)
	if err != nil {
		return err
	}
	defer core.Close()
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// As many compressing goroutines as the process may use CPUs
	// (GOMAXPROCS follows taskset and cgroup limits).
	co := collector.Options{Level: vmcore.Level(d.Level), Compression: d.Compression, Format: d.Format, Workers: runtime.GOMAXPROCS(0)}
	if !o.quiet {
		co.Progress = func(p collector.Progress) { fmt.Fprintln(stderr, p) }
	}
	res, err := collector.Write(core, f, co)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	ram := uint64(0)
	for r, n := range res.Stats {
		if vmcore.Reason(r) != vmcore.NotRAM {
			ram += n
		}
	}
	fmt.Fprintf(stdout, "%s: %d of %d pages written, %d of them zero (%s), %d MiB of page data in %.1f s\n",
		out, res.Writer.Written, ram, res.Writer.ZeroPages, res.Stats.String(), res.Writer.DataBytes>>20, res.Took.Seconds())
	return nil
}
