package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/ukdump/ukdump/pkg/capture"
	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/dumpdir"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// collect writes IN's dump to OUT as kdumpinit does: the crash kernel's
// runtime settings, the vmcore read through mappings, the collector with
// the configured level and compression, the file written through dumpdir
// (flushed every 8 MiB as kdumpinit flushes it, then renamed).
// With -profile it writes a CPU profile of the whole run.
func collect(args []string) error {
	fs := flag.NewFlagSet("collect", flag.ContinueOnError)
	level := fs.Int("d", config.DefaultDumpLevel, "dump level")
	comp := fs.String("c", config.DefaultCompression.String(), "compression")
	cpus := fs.Int("cpus", 1, "CPUs (GOMAXPROCS)")
	profile := fs.String("profile", "", "write a CPU profile here")
	pread := fs.Bool("pread", false, "read the vmcore with pread, not through mappings")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("want IN OUT")
	}
	capture.TuneRuntime(*cpus)
	c, err := diskdump.ParseCompression(*comp)
	if err != nil {
		return err
	}
	if *profile != "" {
		os.MkdirAll(filepath.Dir(*profile), 0o755)
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	open := vmcore.OpenMapped
	if *pread {
		open = vmcore.Open
	}
	core, err := open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer core.Close()
	out := fs.Arg(1)
	var res *collector.Result
	err = dumpdir.WriteFile(filepath.Dir(out), filepath.Base(out), func(f *os.File) error {
		var err error
		res, err = collector.Write(core, capture.NewFlushingFile(f), collector.Options{Level: vmcore.Level(*level), Compression: c, Workers: *cpus})
		return err
	})
	if err != nil {
		return err
	}
	if n, err := core.MapErr(); err != nil {
		fmt.Printf("%d mappings failed (read with pread instead), the first: %v\n", n, err)
	}
	fmt.Printf("written %d pages, %d zero, %d bytes of page data in %.3f s\n",
		res.Writer.Written, res.Writer.ZeroPages, res.Writer.DataBytes, res.Took.Seconds())
	return nil
}
