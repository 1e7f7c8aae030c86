package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// offline runs the verbs that read dumps on a host: convert, dmesg, info.
func offline(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ukdump "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	level := fs.Int("d", config.DefaultDumpLevel, "dump level: sum of 1 zero, 2 cache, 4 private cache, 8 user, 16 free pages left out")
	comp := fs.String("c", config.DefaultCompression, "compression: snappy, zstd, zlib or none")
	elf := fs.Bool("elf", false, "write an ELF core instead of kdump-compressed")
	quiet := fs.Bool("q", false, "no progress lines")
	want := 1
	if cmd == "convert" {
		want = 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != want {
		fmt.Fprintf(stderr, "ukdump %s: want %d file arguments, have %d\n", cmd, want, fs.NArg())
		return 2
	}
	var err error
	switch cmd {
	case "convert":
		err = convert(fs.Arg(0), fs.Arg(1), *level, *comp, *elf, *quiet, stdout, stderr)
	case "dmesg":
		err = collector.DmesgFile(fs.Arg(0), stdout)
	case "info":
		var i *collector.Info
		if i, err = collector.FileInfo(fs.Arg(0)); err == nil {
			fmt.Fprint(stdout, i)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "ukdump %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func convert(in, out string, level int, comp string, elf, quiet bool, stdout, stderr io.Writer) error {
	d := config.Dump{Level: level, Compression: comp, Format: "kdump"}
	if err := d.Validate(); err != nil {
		return err
	}
	c, err := diskdump.ParseCompression(comp)
	if err != nil {
		return err
	}
	core, err := vmcore.Open(in)
	if err != nil {
		return err
	}
	defer core.Close()
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	o := collector.Options{Level: vmcore.Level(level), Compression: c, ELF: elf}
	if !quiet {
		o.Progress = func(p collector.Progress) { fmt.Fprintln(stderr, p) }
	}
	res, err := collector.Write(core, f, o)
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
