package kexec

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/dt"

	"github.com/ukdump/ukdump/pkg/armimage"
)

// fakeSystem writes the files LoadARM64 reads: /proc/iomem with a
// reservation inside RAM, /proc/kcore's program headers, two possible CPUs
// of which one is present, and VMCOREINFO.
func fakeSystem(t *testing.T) Env {
	t.Helper()
	e := Env{Proc: filepath.Join(t.TempDir(), "proc"), Sys: filepath.Join(t.TempDir(), "sys")}
	write := func(name, s string) {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(e.Proc, "iomem"), `09000000-09000fff : pl011@9000000
40000000-bfffffff : System RAM
  40210000-4197ffff : Kernel code
  41980000-41f8ffff : Kernel data
  a8000000-b7ffffff : Crash kernel
`)
	const linear = 0xffff000000000000 - 0x40000000
	kcore, err := CoreHeader(CoreLayout{Machine: elf.EM_AARCH64, Loads: []Load{
		{Range{0x40210000, 0x1d80000}, 0xffff800080010000}, // the kernel image
		{Range{^uint64(0), 0x1000000}, 0xffff800088000000}, // vmalloc: no physical address
		{Range{0x40000000, 0x80000000}, 0x40000000 + linear},
	}})
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(e.Proc, "kcore"), string(kcore))
	cpu := filepath.Join(e.Sys, "devices", "system", "cpu")
	write(filepath.Join(cpu, "possible"), "0-1\n")
	write(filepath.Join(cpu, "cpu0", "crash_notes"), "bf7d1f00\n")
	write(filepath.Join(cpu, "cpu0", "crash_notes_size"), "512\n")
	write(filepath.Join(e.Sys, "kernel", "vmcoreinfo"), "0x000000004294a000 1024\n")
	return e
}

func TestCoreLayout(t *testing.T) {
	e := fakeSystem(t)
	crash, err := e.CrashRegions()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Range{{0xa8000000, 0x10000000}}; !slices.Equal(crash, want) {
		t.Fatalf("CrashRegions = %v, want %v", crash, want)
	}
	l, err := e.CoreLayout(elf.EM_AARCH64, crash)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := CoreHeader(l)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(hdr))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != elf.ET_CORE || f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		t.Errorf("header: %v %v %v %v", f.Type, f.Machine, f.Class, f.Data)
	}
	type ph struct {
		typ               elf.ProgType
		off, paddr, vaddr uint64
		size              uint64
	}
	var got []ph
	for _, p := range f.Progs {
		if p.Filesz != p.Memsz {
			t.Errorf("%v: filesz %d memsz %d", p.Type, p.Filesz, p.Memsz)
		}
		got = append(got, ph{p.Type, p.Off, p.Paddr, p.Vaddr, p.Memsz})
	}
	const linear = 0xffff000000000000 - 0x40000000
	want := []ph{
		{elf.PT_NOTE, 0xbf7d1f00, 0xbf7d1f00, 0, 512},
		{elf.PT_NOTE, 0x4294a000, 0x4294a000, 0, 0x1024},
		{elf.PT_LOAD, 0x40210000, 0x40210000, 0xffff800080010000, 0x1d80000},
		// RAM around the reservation, at its linear-map addresses.
		{elf.PT_LOAD, 0x40000000, 0x40000000, 0x40000000 + linear, 0x68000000},
		{elf.PT_LOAD, 0xb8000000, 0xb8000000, 0xb8000000 + linear, 0x8000000},
	}
	if !slices.Equal(got, want) {
		t.Errorf("program headers:\n got %+v\nwant %+v", got, want)
	}
}

func TestCoreLayoutErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		file, content string
		want          string
	}{
		"no reservation":      {"proc/iomem", "40000000-bfffffff : System RAM\n", "no crashkernel= reservation"},
		"hidden addresses":    {"proc/iomem", "00000000-00000000 : Crash kernel\n", "no addresses"},
		"malformed iomem":     {"proc/iomem", "4000-zz : Crash kernel\n", "malformed"},
		"no kcore":            {"proc/kcore", "", "ELF header"},
		"kcore not ELF":       {"proc/kcore", strings.Repeat("x", 100), "not a 64-bit"},
		"malformed cpu list":  {"sys/devices/system/cpu/possible", "0-x\n", "CPU list"},
		"malformed notes":     {"sys/devices/system/cpu/cpu0/crash_notes", "zz\n", "crash_notes"},
		"malformed vmcorenfo": {"sys/kernel/vmcoreinfo", "4294a000\n", "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			e := fakeSystem(t)
			base := e.Proc
			file := strings.TrimPrefix(tc.file, "proc/")
			if strings.HasPrefix(tc.file, "sys/") {
				base, file = e.Sys, strings.TrimPrefix(tc.file, "sys/")
			}
			if err := os.WriteFile(filepath.Join(base, file), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			crash, err := e.CrashRegions()
			if err == nil {
				_, err = e.CoreLayout(elf.EM_AARCH64, crash)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// image is a plain arm64 Image header with the given text_offset and
// image_size, padded to size bytes.
func image(textOffset, imageSize uint64, size int) []byte {
	b := make([]byte, size)
	h := armimage.Header{TextOffset: textOffset, ImageSize: imageSize, Flags: 2 << 1, Magic: armimage.Magic}
	if _, err := binary.Encode(b, binary.LittleEndian, h); err != nil {
		panic(err)
	}
	return b
}

// bootFDT is a device tree as QEMU's virt machine gives the first kernel.
func bootFDT(t *testing.T) *dt.FDT {
	t.Helper()
	root := dt.NewNode("", dt.WithProperty(dt.PropertyU32("#address-cells", 2), dt.PropertyU32("#size-cells", 2)),
		dt.WithChildren(dt.NewNode("chosen", dt.WithProperty(
			dt.PropertyString("bootargs", "console=ttyAMA0 crashkernel=256M"),
			dt.PropertyU64("kaslr-seed", 0), dt.PropertyU64("linux,initrd-start", 0x48000000), dt.PropertyU64("linux,initrd-end", 0x48100000),
		))))
	var b bytes.Buffer
	h := dt.Header{Magic: dt.Magic, Version: 17, LastCompVersion: 16}
	if _, err := (&dt.FDT{Header: h, RootNode: root}).Write(&b); err != nil {
		t.Fatal(err)
	}
	fdt, err := dt.ReadFDT(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return fdt
}

func TestPlanARM64(t *testing.T) {
	// crashkernel=X,high: crashk_res high, crashk_low_res below 4 GiB,
	// larger here, so that taking the largest would be wrong.
	crash := []Range{{0x20000000, 0x20000000}, {0xa8100000, 0x10000000}}
	region := crash[1]
	kernel := image(0, 40<<20, 30<<20)
	initrd := bytes.Repeat([]byte{0xa5}, 1500<<10+3)
	hdr := make([]byte, 700)
	for _, page := range []uint64{4 << 10, 16 << 10, 64 << 10} {
		p, err := planARM64(bootFDT(t), kernel, initrd, hdr, "console=ttyAMA0 nr_cpus=1", region, crash, page)
		if err != nil {
			t.Fatal(err)
		}
		checkPlanARM64(t, p, kernel, initrd, region, page)
	}
	p, err := planARM64(bootFDT(t), kernel, initrd, hdr, "console=ttyAMA0 nr_cpus=1", region, crash, 4096)
	if err != nil {
		t.Fatal(err)
	}
	// The initramfs is handed over in place: a copy would be a copy of
	// the keys it may hold.
	if s := p.segments[1]; &s.buf[0] != &initrd[0] || p.initrd != (Range{s.mem.Start, uint64(len(initrd))}) {
		t.Errorf("initrd segment %s, plan %s", s.mem, p.initrd)
	}
	// The trampoline loads the kernel's and the device tree's addresses.
	tr := p.segments[3]
	if tr.mem.Start != p.entry || len(tr.buf) != trampolineSize {
		t.Fatalf("entry %#x, trampoline at %s", p.entry, tr.mem)
	}
	dtbSeg := p.segments[4]
	if k := binary.LittleEndian.Uint64(tr.buf[24:]); k != 0xa8200000 {
		t.Errorf("trampoline enters %#x", k)
	}
	if d := binary.LittleEndian.Uint64(tr.buf[32:]); d != dtbSeg.mem.Start {
		t.Errorf("trampoline passes the device tree at %#x, it is at %#x", d, dtbSeg.mem.Start)
	}

	fdt, err := dt.ReadFDT(bytes.NewReader(dtbSeg.buf))
	if err != nil {
		t.Fatal(err)
	}
	chosen, ok := fdt.RootNode.LookupChildByName("chosen")
	if !ok {
		t.Fatal("no /chosen")
	}
	prop := func(name string) []byte {
		p, ok := chosen.LookProperty(name)
		if !ok {
			return nil
		}
		return p.Value
	}
	be := func(v ...uint64) []byte {
		var b []byte
		for _, x := range v {
			b = binary.BigEndian.AppendUint64(b, x)
		}
		return b
	}
	for name, want := range map[string][]byte{
		"bootargs":                  []byte("console=ttyAMA0 nr_cpus=1\x00"),
		"linux,initrd-start":        be(p.initrd.Start),
		"linux,initrd-end":          be(p.initrd.End()),
		"linux,elfcorehdr":          be(p.coreHdr.Start, 700),
		"linux,usable-memory-range": be(0xa8100000, 0x10000000, 0x20000000, 0x20000000),
		"kaslr-seed":                nil,
	} {
		if got := prop(name); !bytes.Equal(got, want) {
			t.Errorf("/chosen/%s = %x, want %x", name, got, want)
		}
	}
	if !slices.Contains(fdt.ReserveEntries, dt.ReserveEntry{Address: p.initrd.Start, Size: p.initrd.Size}) {
		t.Errorf("memory reservations %v lack the initramfs", fdt.ReserveEntries)
	}
}

func TestPlanARM64Errors(t *testing.T) {
	kernel := image(0, 40<<20, 1<<20)
	for name, tc := range map[string]struct {
		kernel []byte
		crash  []Range
		want   string
	}{
		"reservation too small": {kernel, []Range{{0xa8000000, 32 << 20}}, "reserve more"},
		"no reservation":        {kernel, nil, "no crashkernel="},
		"not an Image":          {make([]byte, 4096), []Range{{0xa8000000, 256 << 20}}, "not an arm64 kernel image"},
		"32-bit cells":          {kernel, []Range{{0x1_0000_0000, 256 << 20}}, "32-bit cells"},
	} {
		t.Run(name, func(t *testing.T) {
			fdt := bootFDT(t)
			if name == "32-bit cells" {
				fdt.RootNode.Update(dt.PropertyU32("#address-cells", 1))
			}
			var region Range
			if len(tc.crash) > 0 {
				region = tc.crash[0]
			}
			_, err := planARM64(fdt, tc.kernel, []byte{1}, []byte{2}, "", region, tc.crash, 4096)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// checkPlanARM64: the kernel at the first 2 MiB boundary in the
// reservation, with room for its bss; every segment aligned to the
// running kernel's page size, inside the reservation, apart.
func checkPlanARM64(t *testing.T, p *arm64Plan, kernel, initrd []byte, region Range, page uint64) {
	t.Helper()
	if k := p.segments[0]; k.mem.Start != 0xa8200000 || k.mem.Size != 40<<20 || &k.buf[0] != &kernel[0] {
		t.Errorf("page %d: kernel segment at %s", page, k.mem)
	}
	for i, s := range p.segments {
		if s.mem.Start%page != 0 || s.mem.Size%page != 0 || uint64(len(s.buf)) > s.mem.Size {
			t.Errorf("page %d: segment %d: %s, %d bytes", page, i, s.mem, len(s.buf))
		}
		if s.mem.Start < region.Start || s.mem.End() > region.End() {
			t.Errorf("page %d: segment %d: %s outside %s", page, i, s.mem, region)
		}
		if i > 0 && s.mem.Start < p.segments[i-1].mem.End() {
			t.Errorf("page %d: segment %d overlaps the one before", page, i)
		}
	}
}

// TestCrashKernelRegion: crashk_res is the reservation of
// kexec_crash_size's size, not the largest: crashkernel=256M,high with a
// 512M low part.
func TestCrashKernelRegion(t *testing.T) {
	regions := []Range{{0x20000000, 512 << 20}, {0x8_4000_0000, 256 << 20}}
	e := Env{Proc: t.TempDir(), Sys: t.TempDir()}
	if r, err := e.CrashKernelRegion(regions); err != nil || r != regions[0] {
		t.Errorf("without kexec_crash_size: %v, %v; want the largest", r, err)
	}
	write := func(s string) {
		os.MkdirAll(filepath.Join(e.Sys, "kernel"), 0o755)
		if err := os.WriteFile(filepath.Join(e.Sys, "kernel", "kexec_crash_size"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("268435456\n")
	if r, err := e.CrashKernelRegion(regions); err != nil || r != regions[1] {
		t.Errorf("crashk_res of 256M: %v, %v; want %v", r, err, regions[1])
	}
	// A low part of the same size lies below crashk_res.
	same := []Range{{0x20000000, 256 << 20}, {0x8_4000_0000, 256 << 20}}
	if r, err := e.CrashKernelRegion(same); err != nil || r != same[1] {
		t.Errorf("two of 256M: %v, %v; want the high one", r, err)
	}
	write("1024\n")
	if _, err := e.CrashKernelRegion(regions); err == nil || !strings.Contains(err.Error(), "kexec_crash_size") {
		t.Errorf("no reservation of that size: %v", err)
	}
}
