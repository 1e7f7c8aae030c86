package main

import (
	"flag"
	"fmt"
	"io"
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
	databuf := fs.Int("databuf", 1024, "page data per write, KiB")
	nodata := fs.Bool("nodata", false, "write the header, bitmaps and descriptors but not the page data: the dump's cost without its writes")
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
		ff := capture.NewFlushingFile(f)
		var w io.WriterAt = ff
		if *nodata {
			w = &dropData{FlushingFile: ff, buf: *databuf << 10}
		}
		res, err = collector.Write(core, w, collector.Options{Level: vmcore.Level(*level), Compression: c, Workers: *cpus, DataBuffer: *databuf << 10})
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
	// The resident set at the end, by kind, beside the peak the bench
	// polls: anonymous (heap, stacks, buffers) against file (the binary's
	// text and data in the initramfs).
	fmt.Println(rssSplit())
	return nil
}

// dropData drops the writes of page data: those from the first write of
// most of a data buffer (-databuf; the writer flushes it when the next
// page may not fit) on, at that offset or beyond. The header, bitmaps and
// descriptors lie before the data and are written in smaller pieces
// (at most 128 KiB).
type dropData struct {
	*capture.FlushingFile
	buf    int
	dataAt int64 // 0 until the first data buffer
}

func (d *dropData) WriteAt(p []byte, off int64) (int, error) {
	if d.dataAt == 0 && len(p) > d.buf/2 && len(p) > 128<<10 {
		d.dataAt = off
	}
	if d.dataAt != 0 && off >= d.dataAt {
		return len(p), nil
	}
	return d.FlushingFile.WriteAt(p, off)
}
