package kmod

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// buildObject compiles a relocatable ELF object whose .modinfo section
// holds the given key=value entries, the same layout the kernel build
// produces for a module.
func buildObject(t *testing.T, modinfo ...string) []byte {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not available to build test modules")
	}
	dir := t.TempDir()
	var src strings.Builder
	for i, kv := range modinfo {
		fmt.Fprintf(&src, "static const char info%d[] __attribute__((section(\".modinfo\"), used, aligned(1))) = %q;\n", i, kv)
	}
	src.WriteString("int init_module(void) { return 0; }\n")
	c := filepath.Join(dir, "m.c")
	o := filepath.Join(dir, "m.o")
	if err := os.WriteFile(c, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-c", "-o", o, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	data, err := os.ReadFile(o)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// compress encodes data the way the file name's suffix says.
func compress(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch moduleSuffix(name) {
	case ".ko":
		return data
	case ".ko.xz":
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, w, data)
	case ".ko.zst":
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, w, data)
	case ".ko.gz":
		mustWrite(t, gzip.NewWriter(&buf), data)
	default:
		t.Fatalf("compress: unknown suffix on %s", name)
	}
	return buf.Bytes()
}

func mustWrite(t *testing.T, w interface {
	Write([]byte) (int, error)
	Close() error
}, data []byte) {
	t.Helper()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// mod describes one module file of a test tree.
type mod struct {
	path    string // relative to the tree, e.g. "kernel/a.ko"
	depends string // value of depends=
}

// writeTree creates a module tree in a temp dir. extra maps further
// relative file names (modules.dep, modules.builtin) to their contents.
func writeTree(t *testing.T, mods []mod, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	objs := map[string][]byte{}
	for _, m := range mods {
		obj, ok := objs[m.depends]
		if !ok {
			obj = buildObject(t, "license=GPL", "depends="+m.depends, "vermagic=6.1.0 SMP mod_unload")
			objs[m.depends] = obj
		}
		write(t, filepath.Join(dir, m.path), compress(t, m.path, obj))
	}
	for name, content := range extra {
		write(t, filepath.Join(dir, name), []byte(content))
	}
	return dir
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(mods []Module) []string {
	out := []string{}
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

// diamond is a -> {b, c} -> d, with every compression format in use.
var diamond = []mod{
	{"kernel/drivers/a.ko", "b,c"},
	{"kernel/drivers/b.ko.xz", "d"},
	{"kernel/drivers/c.ko.zst", "d"},
	{"kernel/lib/d.ko.gz", ""},
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		mods    []mod
		extra   map[string]string
		request []string
		want    []string
		wantErr error  // errors.Is target, nil for success
		errHas  string // substring of the error message
	}{
		{
			name:    "diamond via modinfo",
			mods:    diamond,
			request: []string{"a"},
			want:    []string{"d", "b", "c", "a"},
		},
		{
			name:    "shared deps listed once across requests",
			mods:    diamond,
			request: []string{"c", "a", "d"},
			want:    []string{"d", "c", "b", "a"},
		},
		{
			name: "modules.dep wins over modinfo",
			mods: diamond,
			extra: map[string]string{"modules.dep": "kernel/drivers/a.ko: kernel/drivers/c.ko.zst\n" +
				"kernel/drivers/b.ko.xz: kernel/lib/d.ko.gz\n" +
				"kernel/drivers/c.ko.zst:\n" +
				"kernel/lib/d.ko.gz:\n"},
			request: []string{"a"},
			want:    []string{"c", "a"},
		},
		{
			name: "modules.dep entry without a file is trusted",
			mods: diamond,
			extra: map[string]string{"modules.dep": "kernel/drivers/a.ko: kernel/ghost.ko\n" +
				"kernel/ghost.ko:\n"},
			request: []string{"a"},
			want:    []string{"ghost", "a"},
		},
		{
			name:    "empty modules.dep falls back to modinfo",
			mods:    diamond,
			extra:   map[string]string{"modules.dep": ""},
			request: []string{"b"},
			want:    []string{"d", "b"},
		},
		{
			name: "dash and underscore are the same name",
			mods: []mod{
				{"kernel/snd-foo.ko.xz", "snd-bar"},
				{"kernel/snd_bar.ko", ""},
			},
			request: []string{"snd_foo"},
			want:    []string{"snd_bar", "snd_foo"},
		},
		{
			name: "dash request against modules.dep",
			mods: []mod{{"kernel/virtio_blk.ko", ""}, {"kernel/virtio-ring.ko", ""}},
			extra: map[string]string{"modules.dep": "kernel/virtio_blk.ko: kernel/virtio-ring.ko\n" +
				"kernel/virtio-ring.ko:\n"},
			request: []string{"virtio-blk"},
			want:    []string{"virtio_ring", "virtio_blk"},
		},
		{
			name:    "builtin request and builtin dependency are skipped",
			mods:    []mod{{"kernel/a.ko", "crc32c,b"}, {"kernel/b.ko", ""}},
			extra:   map[string]string{"modules.builtin": "kernel/fs/ext4/ext4.ko\nkernel/lib/crc32c.ko\n"},
			request: []string{"ext4", "a"},
			want:    []string{"b", "a"},
		},
		{
			name:    "missing requested module",
			mods:    diamond,
			request: []string{"a", "nosuch"},
			wantErr: ErrNotFound,
			errHas:  "nosuch",
		},
		{
			name:    "missing dependency names both ends",
			mods:    []mod{{"kernel/a.ko", "gone"}},
			request: []string{"a"},
			wantErr: ErrNotFound,
			errHas:  "gone: module not found (needed by a)",
		},
		{
			name:    "cycle via modinfo",
			mods:    []mod{{"kernel/x.ko", "y"}, {"kernel/y.ko.xz", "z"}, {"kernel/z.ko", "y"}},
			request: []string{"x"},
			wantErr: ErrCycle,
			errHas:  "y -> z -> y",
		},
		{
			name:    "self cycle via modules.dep",
			mods:    []mod{{"kernel/x.ko", ""}},
			extra:   map[string]string{"modules.dep": "kernel/x.ko: kernel/x.ko\n"},
			request: []string{"x"},
			wantErr: ErrCycle,
			errHas:  "x -> x",
		},
		{
			name:    "corrupt compressed dependency",
			mods:    []mod{{"kernel/a.ko", "bad"}},
			extra:   map[string]string{"kernel/bad.ko.xz": "this is not xz"},
			request: []string{"a"},
			errHas:  "kmod: bad: xz:",
		},
		{
			name:    "module without .modinfo",
			mods:    []mod{{"kernel/a.ko", ""}},
			extra:   map[string]string{"kernel/notelf.ko": "\x7fELF garbage"},
			request: []string{"notelf"},
			errHas:  "kmod: notelf: elf:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.mods, tt.extra)
			tree, err := Open(dir)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			got, err := tree.Resolve(tt.request...)
			if tt.wantErr != nil || tt.errHas != "" {
				if err == nil {
					t.Fatalf("Resolve(%q) = %q, want error", tt.request, names(got))
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("Resolve error %v does not wrap %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errHas) {
					t.Errorf("Resolve error %q does not contain %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.request, err)
			}
			if !reflect.DeepEqual(names(got), tt.want) {
				t.Errorf("Resolve(%q) = %q, want %q", tt.request, names(got), tt.want)
			}
			for _, m := range got {
				if !filepath.IsAbs(m.Path) || !strings.HasPrefix(m.Path, tree.Dir) {
					t.Errorf("%s: path %q is not absolute under %q", m.Name, m.Path, tree.Dir)
				}
			}
			// Deterministic: a second call gives the same answer.
			again, err := tree.Resolve(tt.request...)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("second Resolve = %v, %v; want %v", names(again), err, names(got))
			}
		})
	}
}

func TestLookup(t *testing.T) {
	dir := writeTree(t, append([]mod{{"kernel/snd-hda.ko.gz", "d"}}, diamond...), map[string]string{
		"modules.builtin":   "kernel/fs/ext4/ext4.ko\nkernel/drivers/block/virtio-blk.ko\n",
		"kernel/bad.ko.zst": "not zstd at all",
	})
	tree, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		wantOK   bool
		wantName string
		wantPath string
		wantDeps []string
	}{
		{"a", true, "a", "kernel/drivers/a.ko", []string{"b", "c"}},
		{"b", true, "b", "kernel/drivers/b.ko.xz", []string{"d"}},
		{"d", true, "d", "kernel/lib/d.ko.gz", nil},
		{"snd_hda", true, "snd_hda", "kernel/snd-hda.ko.gz", []string{"d"}},
		{"snd-hda", true, "snd_hda", "kernel/snd-hda.ko.gz", []string{"d"}},
		{"ext4", false, "", "", nil},
		{"bad", false, "", "", nil},
		{"", false, "", "", nil},
	}
	for _, tt := range tests {
		m, ok := tree.Lookup(tt.name)
		if ok != tt.wantOK {
			t.Errorf("Lookup(%q) ok = %v, want %v", tt.name, ok, tt.wantOK)
			continue
		}
		if !ok {
			continue
		}
		want := Module{Name: tt.wantName, Path: filepath.Join(tree.Dir, tt.wantPath), Deps: tt.wantDeps}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("Lookup(%q) = %+v, want %+v", tt.name, m, want)
		}
	}
	// Callers must not be able to corrupt the index through Deps.
	m, _ := tree.Lookup("a")
	m.Deps[0] = "zzz"
	if m2, _ := tree.Lookup("a"); m2.Deps[0] != "b" {
		t.Errorf("index modified through returned Deps: %q", m2.Deps)
	}

	builtin := []struct {
		name string
		want bool
	}{
		{"ext4", true},
		{"virtio_blk", true},
		{"virtio-blk", true},
		{"a", false},
		{"nosuch", false},
	}
	for _, tt := range builtin {
		if got := tree.Builtin(tt.name); got != tt.want {
			t.Errorf("Builtin(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	wantNames := []string{"a", "b", "bad", "c", "d", "snd_hda"}
	if got := tree.Names(); !reflect.DeepEqual(got, wantNames) {
		t.Errorf("Names() = %q, want %q", got, wantNames)
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	write(t, file, nil)
	badDep := t.TempDir()
	write(t, filepath.Join(badDep, "modules.dep"), []byte("kernel/a.ko kernel/b.ko\n"))
	notMod := t.TempDir()
	write(t, filepath.Join(notMod, "modules.dep"), []byte("kernel/a.txt:\n"))
	tests := []struct {
		name   string
		dir    string
		errHas string
	}{
		{"missing dir", filepath.Join(t.TempDir(), "nope"), "no such file"},
		{"not a directory", file, "not a directory"},
		{"modules.dep line without colon", badDep, "modules.dep:1: missing ':'"},
		{"modules.dep non-module path", notMod, "is not a module file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.dir)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Open(%q) error = %v, want one containing %q", tt.dir, err, tt.errHas)
			}
		})
	}
}

func TestDecompress(t *testing.T) {
	// Enough varied data to span several compression blocks.
	var payload bytes.Buffer
	for i := 0; i < 50000; i++ {
		fmt.Fprintf(&payload, "\x7fELF line %d\x00", i*7919)
	}
	data := payload.Bytes()
	dir := t.TempDir()

	for _, name := range []string{"m.ko", "m.ko.xz", "m.ko.zst", "m.ko.gz"} {
		t.Run("roundtrip "+name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			write(t, p, compress(t, name, data))
			got, err := Decompress(p)
			if err != nil {
				t.Fatalf("Decompress: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("Decompress(%s) returned %d bytes that differ from the %d written", name, len(got), len(data))
			}
		})
	}

	truncate := func(name string) []byte {
		c := compress(t, name, data)
		return c[:len(c)/2]
	}
	flip := func(name string) []byte {
		c := append([]byte(nil), compress(t, name, data)...)
		// Corrupt the trailing checksum area, leaving headers valid.
		c[len(c)-10] ^= 0xff
		return c
	}
	bad := []struct {
		name    string
		content []byte
		errHas  string
	}{
		{"garbage.ko.xz", []byte("not xz"), "xz:"},
		{"garbage.ko.zst", []byte("not zstd"), "zstd:"},
		{"garbage.ko.gz", []byte("not gzip"), "gzip:"},
		{"trunc.ko.xz", truncate("x.ko.xz"), "xz:"},
		{"trunc.ko.zst", truncate("x.ko.zst"), "zstd:"},
		{"trunc.ko.gz", truncate("x.ko.gz"), "gzip:"},
		{"flip.ko.gz", flip("x.ko.gz"), "gzip:"},
		{"flip.ko.xz", flip("x.ko.xz"), "xz:"},
		{"m.ko.bz2", []byte("BZh"), "not a .ko"},
		{"m.o", data, "not a .ko"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			write(t, p, tt.content)
			got, err := Decompress(p)
			if err == nil {
				t.Fatalf("Decompress(%s) = %d bytes, want error", tt.name, len(got))
			}
			if !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), p) {
				t.Errorf("Decompress(%s) error %q should name the file and contain %q", tt.name, err, tt.errHas)
			}
		})
	}

	if _, err := Decompress(filepath.Join(dir, "absent.ko")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Decompress(absent.ko) error = %v, want ErrNotExist", err)
	}
}

func TestModinfoEntries(t *testing.T) {
	obj := buildObject(t, "alias=pci:v1AF4d*", "depends=virtio,virtio-ring", "name=virtio_blk", "depends=")
	got, err := modinfo(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alias=pci:v1AF4d*", "depends=virtio,virtio-ring", "name=virtio_blk", "depends="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("modinfo = %q, want %q", got, want)
	}
}
