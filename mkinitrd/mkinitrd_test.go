package mkinitrd

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/kmod"
)

var static struct {
	once sync.Once
	path string
	err  error
}

// staticInit builds a small static binary to stand in for kdumpinit.
func staticInit(t *testing.T) string {
	t.Helper()
	static.once.Do(func() {
		dir, err := os.MkdirTemp("", "mkinitrd-test-")
		if err != nil {
			static.err = err
			return
		}
		src := filepath.Join(dir, "main.go")
		os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644)
		static.path = filepath.Join(dir, "init")
		cmd := exec.Command("go", "build", "-o", static.path, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			static.err = err
			t.Logf("%s", out)
		}
	})
	if static.err != nil {
		t.Fatal(static.err)
	}
	return static.path
}

// moduleTree makes a tree indexed by modules.dep: a -> b -> c.
func moduleTree(t *testing.T) *kmod.Tree {
	t.Helper()
	dir := t.TempDir()
	for _, m := range []string{"a", "b", "c"} {
		os.MkdirAll(filepath.Join(dir, "kernel"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, "kernel", m+".ko"), []byte("module "+m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dep := "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := kmod.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func options(t *testing.T) Options {
	return Options{
		Init: staticInit(t),
		Config: config.Init{
			Target:        config.Target{FSType: "ext4", Spec: "LABEL=x", UUID: "1234"},
			Path:          "/var/crash",
			Hostname:      "h",
			TargetTimeout: 5e9,
			FailureAction: config.Reboot,
			FinalAction:   config.Poweroff,
			Dump:          config.Dump{Level: 31, Compression: diskdump.Snappy, Format: diskdump.KdumpFormat},
		},
		Tree:    moduleTree(t),
		Modules: []string{"a"},
	}
}

func unpack(t *testing.T, b []byte, c Compression) map[string][]byte {
	t.Helper()
	var r io.Reader = bytes.NewReader(b)
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case Zstd:
		// The kernel's decompression workspace is the window.
		var h zstd.Header
		if err := h.Decode(b); err != nil {
			t.Fatal(err)
		}
		if h.SingleSegment && h.FrameContentSize > zstdWindow || !h.SingleSegment && h.WindowSize > zstdWindow {
			t.Errorf("zstd frame window %d (content %d, single segment %v), want at most %d", h.WindowSize, h.FrameContentSize, h.SingleSegment, zstdWindow)
		}
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, rec := range recs {
		var data []byte
		if rec.ReaderAt != nil {
			data, _ = io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
		}
		files[rec.Name] = data
		if rec.Name == "dev/console" && (rec.Rmajor != 5 || rec.Rminor != 1) {
			t.Errorf("dev/console is %d:%d, want 5:1", rec.Rmajor, rec.Rminor)
		}
	}
	return files
}

func TestBuild(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd, None} {
		t.Run(string(c), func(t *testing.T) {
			o := options(t)
			o.Compression = c
			var buf bytes.Buffer
			rep, err := Build(&buf, o)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Size != int64(buf.Len()) || rep.Compression != c {
				t.Errorf("report says %d bytes %s, wrote %d", rep.Size, rep.Compression, buf.Len())
			}
			files := unpack(t, buf.Bytes(), c)
			for _, name := range []string{"init", "dev/console", "lib/modules/a.ko", "lib/modules/b.ko", "lib/modules/c.ko", config.InitPath} {
				if _, ok := files[name]; !ok {
					t.Errorf("archive lacks %s", name)
				}
			}
			if string(files["lib/modules/b.ko"]) != "module b" {
				t.Errorf("b.ko = %q", files["lib/modules/b.ko"])
			}
			js := string(files[config.InitPath])
			order := []string{`"/lib/modules/c.ko"`, `"/lib/modules/b.ko"`, `"/lib/modules/a.ko"`}
			if i, j, k := strings.Index(js, order[0]), strings.Index(js, order[1]), strings.Index(js, order[2]); i < 0 || i > j || j > k {
				t.Errorf("modules not in dependency order in %s", js)
			}
			var listing bytes.Buffer
			rep.Print(&listing)
			if !strings.Contains(listing.String(), "lib/modules/a.ko") || !strings.Contains(listing.String(), "initramfs: 5 files") {
				t.Errorf("listing:\n%s", listing.String())
			}
		})
	}
}

func TestBuildReproducible(t *testing.T) {
	var a, b bytes.Buffer
	if _, err := Build(&a, options(t)); err != nil {
		t.Fatal(err)
	}
	o := options(t) // a fresh module tree: other paths and mtimes, same contents
	if _, err := Build(&b, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same inputs gave different archives")
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"missing init", func(o *Options) { o.Init = "/nonexistent/kdumpinit" }, "kdumpinit binary"},
		{"text init", func(o *Options) { o.Init = "mkinitrd.go" }, "not a static ELF"},
		{"unknown module", func(o *Options) { o.Modules = []string{"zzz"} }, "zzz"},
		{"modules without tree", func(o *Options) { o.Tree = nil }, "without a module tree"},
		{"bad config", func(o *Options) { o.Config.Target.UUID = "" }, "no UUID"},
		{"bad compression", func(o *Options) { o.Compression = "lz4" }, "unknown compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t)
			tc.edit(&o)
			if _, err := Build(io.Discard, o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build error = %v, want %q", err, tc.want)
			}
		})
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		o := options(t)
		o.Init, _ = filepath.EvalSymlinks(sh)
		if _, err := Build(io.Discard, o); err == nil || !strings.Contains(err.Error(), "not a static ELF") {
			t.Errorf("dynamic init accepted: %v", err)
		}
	}
}

func TestCompressionFor(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		config string
		want   Compression
	}{
		{"CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n", Zstd},
		{"CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n", Gzip},
	} {
		name := filepath.Join(dir, "config")
		os.WriteFile(name, []byte(tc.config), 0o644)
		if got := CompressionFor(name); got != tc.want {
			t.Errorf("CompressionFor(%q) = %s, want %s", tc.config, got, tc.want)
		}
	}
	if got := CompressionFor(filepath.Join(dir, "missing")); got != Gzip {
		t.Errorf("no config: %s, want gzip", got)
	}
}

func TestBuildSecrets(t *testing.T) {
	o := options(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	o.Secrets = []Secret{{Name: SecretsDir + "/vol.key", Data: key}}
	var buf bytes.Buffer
	rep, err := Build(&buf, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SecretsAt <= 0 || rep.SecretsAt+rep.SecretsLen != int64(buf.Len()) || rep.Size != int64(buf.Len()) {
		t.Fatalf("secrets at %d+%d, image %d bytes", rep.SecretsAt, rep.SecretsLen, buf.Len())
	}
	main := buf.Bytes()[:rep.SecretsAt]
	if bytes.Contains(unpackRaw(t, main), key) {
		t.Error("key inside the compressed archive")
	}
	secrets := buf.Bytes()[rep.SecretsAt:]
	trimmed := bytes.TrimLeft(secrets, "\x00")
	if pad := len(secrets) - len(trimmed); (rep.SecretsAt+int64(pad))%4 != 0 || pad > 3 {
		t.Errorf("secrets archive starts at %d, not 4-byte aligned", rep.SecretsAt+int64(pad))
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(trimmed)))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Name != SecretsDir || recs[1].Name != SecretsDir+"/vol.key" || recs[1].Mode != cpio.S_IFREG|0o400 {
		t.Fatalf("secrets archive records: %v", recs)
	}
	got, _ := io.ReadAll(io.NewSectionReader(recs[1].ReaderAt, 0, int64(recs[1].FileSize)))
	if !bytes.Equal(got, key) {
		t.Errorf("key file holds %q", got)
	}
	if !bytes.Equal(key, []byte("0123456789abcdef0123456789abcdef")) {
		t.Error("Build changed the caller's key")
	}
}

func unpackRaw(t *testing.T, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
