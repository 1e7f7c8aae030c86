// Package estimate computes the crashkernel= reservation a machine needs
// for ukdump's crash kernel, term by term, from what the crash kernel will
// hold: its image once unpacked, the initramfs, kdumpinit and the kernel's
// own allocations.
//
// Calibration (QEMU, README "Figures"): Debian 12's stock 6.1 cloud kernel
// (init_size 51.5 MiB) dumps a LUKS2 target in crashkernel=80M since the
// initramfs is compressed with a 256 KiB zstd window (88M before, out of
// memory while unpacking it with the default 8 MiB window); a small 7.3
// kernel works in 48M. The model gives 112M for the first: above what was
// measured to work, with room for real hardware's drivers.
package estimate

import (
	"fmt"
	"io"
)

// MiB is a mebibyte.
const MiB = 1 << 20

const (
	// KdumpinitPeak is kdumpinit's memory: its peak RSS in the tests is
	// 5-9 MiB. The collector scans struct pages twice with fixed buffers
	// instead of keeping bitmaps, so its memory does not grow with the
	// dead kernel's RAM: a constant, with headroom. There is no key
	// derivation term: the crash kernel never runs a keyslot KDF (Argon2),
	// it checks the handed-over key with PBKDF2 against the digest.
	KdumpinitPeak = 12 * MiB
	// Margin is the crash kernel's own memory beyond its image: page
	// tables, the struct page array of its own memory ((reservation/4096)
	// * 64 bytes: 2 MiB for 128 MiB), slab and per-CPU areas, the drivers
	// of the target's devices and their DMA buffers, elfcorehdr, purgatory
	// and boot parameters. 32 MiB is what makes the model clear Debian
	// 6.1's measured 88M.
	Margin = 32 * MiB
	// Granule is what the recommended crashkernel= is rounded up to.
	Granule = 16 * MiB
	// PerCPU is what each crash kernel CPU beyond the first costs
	// (crash_cpus): measured with two on Debian 12's kernel, kdumpinit's
	// peak grew by 2.8 MiB (the batches and encoder of its second
	// compressing goroutine) and the kernel's early reservation by
	// 244 KiB; with headroom for the CPU's threads and slab caches.
	PerCPU = 4 * MiB
)

// Inputs are the measured sizes of the crash kernel.
type Inputs struct {
	// Kernel names the kernel image, for the table.
	Kernel string
	// InitSize is the memory the kernel needs from its load address to
	// boot, its decompressed image with bss and brk: the bzImage setup
	// header's init_size, or the arm64 Image header's image_size.
	InitSize uint64
	// SizeTerm says where InitSize comes from, for the table (default
	// "bzImage init_size").
	SizeTerm string
	// Initramfs is the size of the initramfs as loaded (compressed), and
	// Unpacked the size of the files it holds: the kernel keeps both while
	// it unpacks.
	Initramfs, Unpacked uint64
	// Compression is the initramfs compression, for the table.
	Compression string
	// Reserved is the current reservation (/sys/kernel/kexec_crash_size),
	// 0 for none.
	Reserved uint64
	// CPUs is the crash kernel's CPU count (crash_cpus); 0 counts as 1.
	CPUs int
}

// Term is one line of the estimate.
type Term struct {
	Name  string
	Bytes uint64
}

// Estimate is the memory the crash kernel needs.
type Estimate struct {
	Kernel string
	Terms  []Term
	// Total is the sum of the terms: the least reservation that suffices.
	Total uint64
	// Recommended is Total rounded up to Granule: the crashkernel= to set.
	Recommended uint64
	Reserved    uint64
}

// Compute sums the terms.
func Compute(in Inputs) Estimate {
	comp := "compressed"
	if in.Compression != "" {
		comp = in.Compression
	}
	sizeTerm := in.SizeTerm
	if sizeTerm == "" {
		sizeTerm = "bzImage init_size"
	}
	e := Estimate{Kernel: in.Kernel, Reserved: in.Reserved, Terms: []Term{
		{"kernel image (" + sizeTerm + ")", in.InitSize},
		{"initramfs as loaded (" + comp + ")", in.Initramfs},
		{"initramfs unpacked", in.Unpacked},
		{"kdumpinit peak (constant: does not grow with RAM)", KdumpinitPeak},
		{"margin: page tables, struct pages, slab, drivers", Margin},
	}}
	if in.CPUs > 1 {
		e.Terms = append(e.Terms, Term{fmt.Sprintf("%d more CPUs (crash_cpus %d)", in.CPUs-1, in.CPUs), uint64(in.CPUs-1) * PerCPU})
	}
	for _, t := range e.Terms {
		e.Total += t.Bytes
	}
	e.Recommended = (e.Total + Granule - 1) / Granule * Granule
	return e
}

// Enough reports whether the current reservation holds the estimate.
func (e Estimate) Enough() bool { return e.Reserved >= e.Total }

// Cmdline is the kernel command line argument to reserve the memory.
func (e Estimate) Cmdline() string { return fmt.Sprintf("crashkernel=%dM", e.Recommended/MiB) }

// Verdict is one line on the current reservation: enough or what to do.
func (e Estimate) Verdict() string {
	switch {
	case e.Reserved == 0:
		return fmt.Sprintf("current reservation: none: not enough (add %s to the kernel command line and reboot)", e.Cmdline())
	case !e.Enough():
		return fmt.Sprintf("current reservation %d MiB: not enough (set %s on the kernel command line and reboot)", e.Reserved/MiB, e.Cmdline())
	}
	return fmt.Sprintf("current reservation %d MiB: enough", e.Reserved/MiB)
}

// Print writes the table, the recommendation and the verdict.
func (e Estimate) Print(w io.Writer) {
	fmt.Fprintf(w, "memory of the crash kernel %s:\n", e.Kernel)
	width := 0
	for _, t := range e.Terms {
		width = max(width, len(t.Name))
	}
	for _, t := range append(e.Terms, Term{"total", e.Total}) {
		fmt.Fprintf(w, "  %-*s  %10.1f MiB\n", width, t.Name, float64(t.Bytes)/MiB)
	}
	fmt.Fprintf(w, "recommended: %s (the total rounded up to %d MiB)\n%s\n", e.Cmdline(), Granule/MiB, e.Verdict())
}
