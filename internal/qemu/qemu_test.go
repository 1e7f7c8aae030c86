package qemu

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	base := []string{
		"-accel", "tcg", "-nographic", "-monitor", "none", "-no-reboot", "-nic", "none",
	}
	tests := []struct {
		name string
		opts Options
		want []string // after base
	}{
		{
			name: "defaults",
			opts: Options{Kernel: "/k/bzImage"},
			want: []string{"-m", "512", "-smp", "1", "-kernel", "/k/bzImage"},
		},
		{
			name: "everything",
			opts: Options{
				Binary:    "/opt/qemu",
				Kernel:    "/k/bzImage",
				Initrd:    "/k/initrd.cpio.gz",
				Cmdline:   "console=ttyS0 panic=-1",
				MemoryMiB: 1024,
				CPUs:      2,
				Disks:     []string{"/d/a.img", "/d/b.img"},
				Timeout:   time.Minute,
				ExtraArgs: []string{"-cpu", "max"},
			},
			want: []string{
				"-m", "1024", "-smp", "2", "-kernel", "/k/bzImage",
				"-initrd", "/k/initrd.cpio.gz",
				"-append", "console=ttyS0 panic=-1",
				"-drive", "file=/d/a.img,if=virtio,format=raw",
				"-drive", "file=/d/b.img,if=virtio,format=raw",
				"-cpu", "max",
			},
		},
		{
			name: "negative sizes fall back to defaults",
			opts: Options{Kernel: "k", MemoryMiB: -1, CPUs: -3},
			want: []string{"-m", "512", "-smp", "1", "-kernel", "k"},
		},
		{
			name: "comma in disk path is escaped",
			opts: Options{Kernel: "k", Disks: []string{"/tmp/a,b.img"}},
			want: []string{
				"-m", "512", "-smp", "1", "-kernel", "k",
				"-drive", "file=/tmp/a,,b.img,if=virtio,format=raw",
			},
		},
		{
			name: "cmdline with spaces stays one argument",
			opts: Options{Kernel: "k", Cmdline: "a b  c"},
			want: []string{"-m", "512", "-smp", "1", "-kernel", "k", "-append", "a b  c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.opts.Args()
			want := append(slices.Clone(base), tt.want...)
			if !slices.Equal(got, want) {
				t.Errorf("Args() =\n  %q\nwant\n  %q", got, want)
			}
		})
	}
}

func TestArgsDoesNotAliasExtraArgs(t *testing.T) {
	extra := make([]string, 1, 10)
	extra[0] = "-S"
	o := Options{Kernel: "k", ExtraArgs: extra}
	a := o.Args()
	a[0] = "changed"
	if o.Args()[0] != "-accel" || extra[0] != "-S" {
		t.Fatal("Args shares memory with Options")
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", 3, "a\nb\nc"},
		{"a\nb\nc\n", 10, "a\nb\nc"},
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc\n", -1, ""},
		{"one line", 1, "one line"},
		{"a\n\n\nb\n", 2, "\nb"},
	}
	for _, tt := range tests {
		if got := Tail(tt.s, tt.n); got != tt.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	var o Options
	if o.binary() != DefaultBinary || o.timeout() != DefaultTimeout {
		t.Errorf("zero Options: binary %q timeout %v", o.binary(), o.timeout())
	}
}

func TestARM64Args(t *testing.T) {
	o := Options{Arch: ArchARM64, Kernel: "Image", Disks: []string{"d.img"}}
	args := strings.Join(o.Args(), " ")
	if o.binary() != ARM64Binary || !strings.HasPrefix(args, "-M virt -cpu max") || !strings.Contains(args, "-kernel Image") ||
		!strings.Contains(args, "file=d.img,if=virtio,format=raw") {
		t.Errorf("arm64: %s %s", o.binary(), args)
	}
	if ArchARM64.Console() != "ttyAMA0" || Arch("").Console() != "ttyS0" {
		t.Error("consoles")
	}
	if (Options{}).binary() != DefaultBinary || strings.Contains(strings.Join(Options{Kernel: "k"}.Args(), " "), "virt") {
		t.Error("x86_64 is the default")
	}
}
