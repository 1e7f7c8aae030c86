// Package capture is the dump job of the crash kernel: wait for the target
// filesystem, mount it, write the dump into a new directory, unmount.
package capture

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/collector"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dumpdir"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/scrub"
	"github.com/ukdump/ukdump/pkg/vmcore"
)

// Env is what the job touches of the crash kernel's system.
type Env struct {
	Log *kmsg.Logger
	Sys blockdev.Sys
	// Vmcore is the dead kernel's memory, /proc/vmcore.
	Vmcore string
	// MountDir is where the target is mounted.
	MountDir string
	// Now names the dump directory.
	Now func() time.Time
	// Kick is called whenever the dump makes progress, for a stall watchdog.
	Kick func()
	// Mount mounts the target device dev on dir and returns how to unmount
	// it; kdumpinit passes Mount, tests a fake.
	Mount func(dev, dir, fstype, opts string) (unmount func() error, err error)
	// Keys are the volume keys unlocking kept, which the dump is scrubbed
	// of (unless cfg.Dump.KeepKeys). Run wipes them once the vmcore is
	// written; their owner wipes them on the paths that do not get there.
	Keys *scrub.Keys
}

// Mount mounts with mount(2). Its unmount flushes every filesystem first, so
// that the dump is on the disk before the crash kernel reboots.
func Mount(dev, dir, fstype, opts string) (func() error, error) {
	mp, err := mount.Mount(dev, dir, fstype, opts, 0)
	if err != nil {
		return nil, err
	}
	return func() error {
		unix.Sync()
		return mp.Unmount(0)
	}, nil
}

// StepError names the step of the job that failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: name, Err: err}
}

// Result describes a written dump.
type Result struct {
	// Dir is the dump directory as seen on the target filesystem.
	Dir   string
	Bytes int64
	Took  time.Duration
}

// Run writes one dump as cfg says. The target is unmounted before Run
// returns, whatever happened.
func Run(ctx context.Context, cfg *config.Init, env Env) (res *Result, err error) {
	t := cfg.Target
	spec := ""
	if t.Spec != "UUID="+t.UUID {
		spec = " (" + t.Spec + " in ukdump.conf)"
	}
	env.Log.Printf("waiting up to %s for the target %s UUID=%s%s", time.Duration(cfg.TargetTimeout), t.FSType, t.UUID, spec)
	wctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.TargetTimeout))
	defer cancel()
	dev, _, err := env.Sys.Wait(wctx, blockdev.ByUUID(t.UUID), 200*time.Millisecond)
	if err != nil {
		return nil, step("wait for target", fmt.Errorf("%s UUID=%s did not appear within %s: %w",
			t.FSType, t.UUID, time.Duration(cfg.TargetTimeout), err))
	}
	env.Log.Printf("found target %s on %s", t.UUID, dev.Path)

	if err := os.MkdirAll(env.MountDir, 0o755); err != nil {
		return nil, step("mount target", err)
	}
	unmount, err := env.Mount(dev.Path, env.MountDir, t.FSType, t.Options)
	if err != nil {
		return nil, step("mount target", fmt.Errorf("%s as %s: %w", dev.Path, t.FSType, err))
	}
	env.Log.Printf("mounted %s on %s", dev.Path, env.MountDir)
	defer func() {
		if uerr := unmount(); uerr != nil && err == nil {
			err = step("unmount target", uerr)
		} else if uerr == nil {
			env.Log.Printf("unmounted %s", env.MountDir)
		}
	}()

	// Mapped: each pread of /proc/vmcore would copy a page through a
	// temporary kernel mapping of the old memory.
	core, err := vmcore.OpenMapped(env.Vmcore)
	if err != nil {
		return nil, step("open vmcore", err)
	}
	defer core.Close()
	dir, err := dumpdir.Create(env.MountDir, cfg.Path, cfg.Hostname, crashTime(core, env.Now))
	if err != nil {
		return nil, step("create dump directory", err)
	}
	rel := filepath.Join(cfg.Path, filepath.Base(dir))
	env.Log.Printf("writing dump to %s", rel)

	n, took, err := writeDump(core, cfg, env, dir)
	if err != nil {
		return nil, step("write vmcore", err)
	}
	env.Log.Printf("dump complete: %s/vmcore, %d MiB in %.1f s", rel, n>>20, took.Seconds())
	return &Result{Dir: rel, Bytes: n, Took: took}, nil
}

// maxUnreadableLogged bounds the lines about unreadable pages: a bad DIMM
// can make thousands, and the console is slow.
const maxUnreadableLogged = 10

// dmesgLimit bounds the kernel log extraction: a healthy ring is read in
// well under a second; one that takes longer is damaged, and the dump
// itself matters more.
const dmesgLimit = 60 * time.Second

// writeDump writes the kernel log first, so that it survives even if the
// dump does not, then the filtered, compressed dump, scrubbed of the
// volume keys, and with volumes scrub.txt.
func writeDump(core *vmcore.Core, cfg *config.Init, env Env, dir string) (int64, time.Duration, error) {
	d := cfg.Dump
	start := time.Now()
	err := dumpdir.WriteFile(dir, "vmcore-dmesg.txt", func(f *os.File) error {
		return collector.Dmesg(core, f, collector.DmesgOptions{Kick: env.Kick, Limit: dmesgLimit})
	})
	if err != nil {
		env.Log.Printf("warning: no vmcore-dmesg.txt: %v", err)
	} else {
		env.Log.Printf("wrote vmcore-dmesg.txt")
	}
	st, err := os.Stat(env.Vmcore)
	if err != nil {
		return 0, 0, fmt.Errorf("size of the vmcore: %w", err)
	}
	warnSpace(env, dir, st.Size())
	unreadable := 0
	o := collector.Options{
		Workers:     runtime.GOMAXPROCS(0),
		Level:       vmcore.Level(d.Level),
		Compression: d.Compression,
		Format:      d.Format,
		Progress: func(p collector.Progress) {
			env.Log.Progressf("%s", p)
			if env.Kick != nil {
				env.Kick()
			}
		},
		// Warnings (pages kept because VMCOREINFO lacks something, or
		// filtering impossible) come before the long write they explain.
		Warn: func(w string) { env.Log.Printf("warning: %s", w) },
		Unreadable: func(pfn uint64, err error) {
			unreadable++
			if unreadable <= maxUnreadableLogged {
				env.Log.Printf("warning: page %#x unreadable, recorded as missing: %v", pfn, err)
			}
		},
	}
	if n := o.Compressors(); n > 1 {
		env.Log.Printf("compressing pages on %d CPUs", n)
	}
	sc, info := newScrubber(d, len(cfg.Volumes), env)
	o.Scrub = sc
	var res *collector.Result
	err = dumpdir.WriteFile(dir, "vmcore", func(f *os.File) error {
		var err error
		res, err = collector.Write(core, NewFlushingFile(f), o)
		return err
	})
	// The keys are needed no longer, whatever happened.
	sc.Wipe()
	env.Keys.Wipe()
	if len(cfg.Volumes) > 0 {
		reportScrub(env, dir, d, len(cfg.Volumes), info, res)
	}
	if res != nil {
		env.Log.Printf("pages: %s; %d written, %d of them zero", res.Stats.String(), res.Writer.Written, res.Writer.ZeroPages)
		if res.Writer.Missing > 0 {
			env.Log.Printf("warning: %d pages could not be read; the dump records them as missing and is marked incomplete", res.Writer.Missing)
		}
	}
	if err != nil {
		return 0, 0, err
	}
	fi, err := os.Stat(filepath.Join(dir, "vmcore"))
	if err != nil {
		return 0, 0, err
	}
	return fi.Size(), time.Since(start), nil
}

// crashTime names the dump after the moment of the crash, which the dead
// kernel recorded in VMCOREINFO; the crash kernel's clock is the fallback.
func crashTime(core *vmcore.Core, now func() time.Time) time.Time {
	if info, err := core.VMCOREINFO(); err == nil {
		if t, ok := info.CrashTime(); ok {
			return t.UTC()
		}
	}
	return now().UTC()
}

// warnSpace says early when the target cannot hold the dump, so that the
// administrator reading the console knows why it will be incomplete.
func warnSpace(env Env, dir string, need int64) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < need {
		env.Log.Printf("warning: target has %d MiB free; memory before filtering is %d MiB", free>>20, need>>20)
	}
}

// flushEvery is how much of the dump may wait in the page cache. A target
// that starts failing writes makes ext4 abort its journal; the dump's dirty
// pages can then never be written, and a write(2) that finds too many of
// them sleeps in the kernel's dirty-page throttle for ever (killable, so no
// hung-task panic), until the stall watchdog ends it minutes later. Written
// back every few MiB, the dump stays below the throttle of even a small
// crash kernel (it starts at about 15% of free memory), and the wait for
// the writeback returns the error (EIO, or EROFS once ext4 has aborted)
// at once.
const flushEvery = 8 << 20

// NewFlushingFile returns f as kdumpinit writes the dump to it: written
// back to the disk every flushEvery bytes. The benchmark's crash kernel
// writes through it too, so that its figures include the writeback.
func NewFlushingFile(f *os.File) *FlushingFile {
	return &FlushingFile{f: f, every: flushEvery, flush: writeBehind, sync: unix.Fdatasync}
}

// syncEvery is how many windows pass between fdatasyncs, which commit the
// file's size and blocks too: what a disk that fails later, or a power
// loss, leaves of a dump cut short (vmcore-incomplete) is what the last
// one committed.
const syncEvery = 8

// writeBehind waits for the writeback started at the last call and
// starts it for what was written since, without waiting for that: the disk
// writes one window while the collector fills the next, and at most two
// windows are ever dirty. It replaces an fdatasync per window, which left
// the collector idle while the disk wrote (and flushed its cache): about
// 40% of the dump's time in the benchmark's crash kernel. It does not make
// the data durable; every syncEvery windows an fdatasync does, and dumpdir
// syncs the whole file before naming it vmcore.
func writeBehind(fd int) error {
	return unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE)
}

// FlushingFile writes to f and has its data written back to the disk
// every so many bytes, returning the writeback's error as the write's.
type FlushingFile struct {
	f       *os.File
	every   int64
	flush   func(fd int) error // writeBehind
	sync    func(fd int) error // unix.Fdatasync, every syncEvery flushes
	pending int64
	flushes int
}

func (w *FlushingFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.f.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	if w.pending += int64(n); w.pending >= w.every {
		w.pending = 0
		w.flushes++
		flush := w.flush
		if w.flushes%syncEvery == 0 {
			flush = w.sync
		}
		if err := flush(int(w.f.Fd())); err != nil {
			return n, fmt.Errorf("flushing the dump to the target: %w", err)
		}
	}
	return n, nil
}

// Truncate lets the collector start an unfiltered dump afresh.
func (w *FlushingFile) Truncate(size int64) error { return w.f.Truncate(size) }

// ReadAt lets the writer read the bitmaps it wrote back from the file
// instead of scanning the struct pages a second time.
func (w *FlushingFile) ReadAt(p []byte, off int64) (int, error) { return w.f.ReadAt(p, off) }
