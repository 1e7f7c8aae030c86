// Package mkinitrd builds the crash kernel's initramfs: kdumpinit as /init,
// the kernel modules the dump target needs (decompressed, in load order) and
// the typed configuration kdumpinit reads. The same inputs always give the
// same bytes, so distributions can build it in packaging and compare.
package mkinitrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/kmod"
)

// Compression is how the whole archive is compressed.
type Compression string

// The compressions the kernel can unpack an initramfs from (RD_ZSTD, RD_GZIP).
const (
	Zstd Compression = "zstd"
	Gzip Compression = "gzip"
	None Compression = "none"
)

// ModuleDir is where modules sit inside the initramfs.
const ModuleDir = "lib/modules"

// Options describe one initramfs.
type Options struct {
	// Init is the path of the static kdumpinit binary.
	Init string
	// Config is packed for kdumpinit; Build fills in Config.Modules.
	Config config.Init
	// Tree is the module tree of the crash kernel; nil when no modules are needed.
	Tree *kmod.Tree
	// Modules are module names whose closure goes in.
	Modules []string
	// Compression defaults to Gzip, which every kernel can unpack.
	Compression Compression
	// Secrets go into a separate uncompressed archive (see Secret). Only
	// for images built in memory: never give secrets for a file.
	Secrets []Secret
}

// SecretsDir is where Secrets live inside the initramfs.
const SecretsDir = "etc/ukdump/keys"

// Entry is one file in the archive.
type Entry struct {
	Name string
	Size int64
}

// Report tells what Build packed.
type Report struct {
	Files       []Entry
	Compression Compression
	// Uncompressed and Size are the archive's bytes before and after compression.
	Uncompressed, Size int64
	// SecretsAt and SecretsLen locate the secrets archive in the output,
	// so that the caller can overwrite it once the kernel has its copy.
	SecretsAt, SecretsLen int64
}

// Print writes a human-readable listing of r.
func (r *Report) Print(w io.Writer) {
	for _, f := range r.Files {
		fmt.Fprintf(w, "  %9d  %s\n", f.Size, f.Name)
	}
	fmt.Fprintf(w, "initramfs: %d files, %.1f MiB unpacked, %.1f MiB %s\n",
		len(r.Files), float64(r.Uncompressed)/(1<<20), float64(r.Size)/(1<<20), r.Compression)
}

// Build writes the initramfs to w.
func Build(w io.Writer, o Options) (*Report, error) {
	if o.Compression == "" {
		o.Compression = Gzip
	}
	init, err := os.ReadFile(o.Init)
	if err != nil {
		return nil, fmt.Errorf("mkinitrd: kdumpinit binary: %w", err)
	}
	if !isStaticELF(init) {
		return nil, fmt.Errorf("mkinitrd: %s is not a static ELF executable (build it with CGO_ENABLED=0)", o.Init)
	}
	rb := &records{}
	for _, d := range []string{"dev", "proc", "sys", "mnt", "tmp", "etc", "etc/ukdump", "lib", ModuleDir} {
		rb.add(cpio.Directory(d, 0o755))
	}
	// The kernel opens /dev/console for init's stdin, stdout and stderr
	// before devtmpfs is mounted, so the node must be in the archive.
	rb.add(cpio.CharDev("dev/console", 0o600, 5, 1))
	rb.addFile("init", init, 0o755)

	cfg := o.Config
	cfg.Modules = nil
	if len(o.Modules) > 0 {
		if o.Tree == nil {
			return nil, fmt.Errorf("mkinitrd: modules %v requested without a module tree", o.Modules)
		}
		mods, err := o.Tree.Resolve(o.Modules...)
		if err != nil {
			return nil, fmt.Errorf("mkinitrd: %w", err)
		}
		for _, m := range mods {
			b, err := kmod.Decompress(m.Path)
			if err != nil {
				return nil, fmt.Errorf("mkinitrd: %w", err)
			}
			name := path.Join(ModuleDir, m.Name+".ko")
			rb.addFile(name, b, 0o644)
			cfg.Modules = append(cfg.Modules, "/"+name)
		}
	}
	js, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("mkinitrd: %w", err)
	}
	rb.addFile(config.InitPath, js, 0o644)

	var raw bytes.Buffer
	cw := cpio.Newc.Writer(&raw)
	if err := cpio.WriteRecords(cw, rb.recs); err != nil {
		return nil, fmt.Errorf("mkinitrd: cpio: %w", err)
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return nil, fmt.Errorf("mkinitrd: cpio: %w", err)
	}
	n, err := compress(w, raw.Bytes(), o.Compression)
	if err != nil {
		return nil, fmt.Errorf("mkinitrd: %s: %w", o.Compression, err)
	}
	rep := &Report{Compression: o.Compression, Uncompressed: int64(raw.Len()), Size: n}
	if len(o.Secrets) > 0 {
		m, err := writeSecrets(w, n, o.Secrets, SecretsDir)
		if err != nil {
			return nil, fmt.Errorf("mkinitrd: secrets: %w", err)
		}
		rep.SecretsAt, rep.SecretsLen, rep.Size = n, m, n+m
		for _, s := range o.Secrets {
			rb.files = append(rb.files, Entry{Name: s.Name + " (in memory only)", Size: int64(len(s.Data))})
		}
	}
	sort.Slice(rb.files, func(i, j int) bool { return rb.files[i].Name < rb.files[j].Name })
	rep.Files = rb.files
	return rep, nil
}

// records collects cpio records with inode numbers assigned in order, which
// keeps the archive reproducible while giving each file its own inode.
type records struct {
	recs  []cpio.Record
	files []Entry
}

func (r *records) add(rec cpio.Record) {
	rec = cpio.MakeReproducible(rec)
	rec.Ino = uint64(len(r.recs) + 1)
	rec.NLink = 1
	r.recs = append(r.recs, rec)
}

func (r *records) addFile(name string, b []byte, perm uint64) {
	r.add(cpio.StaticRecord(b, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}))
	r.files = append(r.files, Entry{Name: name, Size: int64(len(b))})
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func compress(w io.Writer, b []byte, c Compression) (int64, error) {
	cw := &countingWriter{w: w}
	var zw io.WriteCloser
	switch c {
	case None:
		_, err := cw.Write(b)
		return cw.n, err
	case Gzip:
		// No name and a zero time in the header keep the output reproducible.
		g, err := gzip.NewWriterLevel(cw, gzip.BestCompression)
		if err != nil {
			return 0, err
		}
		zw = g
	case Zstd:
		// One encoder goroutine keeps the output reproducible. The
		// kernel unpacks the initramfs with a streaming decompressor
		// whose workspace is the frame's window: the default 8 MiB was
		// what a small crash kernel ran out of (crashkernel=80M on
		// Debian 12's kernel). A zstdWindow window costs 1% of size.
		z, err := zstd.NewWriter(cw, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithWindowSize(zstdWindow))
		if err != nil {
			return 0, err
		}
		zw = z
	default:
		return 0, fmt.Errorf("unknown compression %q", c)
	}
	if _, err := zw.Write(b); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// CompressionFor picks the best compression the kernel described by the
// kernel config file (/boot/config-<release>) can unpack. Without a config
// it picks gzip, which every distribution kernel enables.
func CompressionFor(kernelConfig string) Compression {
	f, err := os.Open(kernelConfig)
	if err != nil {
		return Gzip
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "CONFIG_RD_ZSTD=y" {
			return Zstd
		}
	}
	return Gzip
}

// isStaticELF reports whether b is an ELF executable without an interpreter:
// a dynamic binary would fail in the crash kernel, which has no libc.
func isStaticELF(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// zstdWindow is the zstd window of the initramfs, and so the size of the
// kernel's decompression workspace while it unpacks it (kdumpinit alone:
// 1,578,434 bytes with 256 KiB, 1,563,509 with the default 8 MiB).
const zstdWindow = 256 << 10
