package kexec

import (
	"bufio"
	"cmp"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Env is where the running kernel is read: /proc and /sys, or a copy of the
// files that matter in tests.
type Env struct {
	Proc, Sys string
}

// Running is the running system's.
func Running() Env { return Env{Proc: "/proc", Sys: "/sys"} }

// CrashRegions reads the crashkernel= reservations ("Crash kernel" in
// /proc/iomem; two when the kernel reserved a low part too), largest first.
func (e Env) CrashRegions() ([]Range, error) {
	name := filepath.Join(e.Proc, "iomem")
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("kexec: %w", err)
	}
	defer f.Close()
	var out []Range
	s := bufio.NewScanner(f)
	for s.Scan() {
		span, what, ok := strings.Cut(strings.TrimSpace(s.Text()), " : ")
		if !ok || what != "Crash kernel" {
			continue
		}
		lo, hi, ok := strings.Cut(span, "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		last, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || last < start {
			return nil, fmt.Errorf("kexec: %s: malformed line %q", name, s.Text())
		}
		if start == 0 && last == 0 {
			// Addresses hidden from an unprivileged reader.
			return nil, fmt.Errorf("kexec: %s shows no addresses (not run as root?)", name)
		}
		out = append(out, Range{start, last - start + 1})
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("kexec: %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kexec: no crashkernel= reservation in %s", name)
	}
	slices.SortFunc(out, func(a, b Range) int { return cmp.Compare(b.Size, a.Size) })
	return out, nil
}

// CrashKernelRegion picks, among the reservations regions (CrashRegions),
// the kernel's crashk_res: the one kexec_load must place every segment of
// a crash kernel in. /proc/iomem names it and crashk_low_res alike ("Crash
// kernel"); /sys/kernel/kexec_crash_size is crashk_res's size alone. A
// low part of the same size is below it: of several that match, the
// highest. Without that file, the largest.
func (e Env) CrashKernelRegion(regions []Range) (Range, error) {
	if len(regions) == 0 {
		return Range{}, errors.New("kexec: no crashkernel= reservation")
	}
	size, err := readUint(filepath.Join(e.Sys, "kernel", "kexec_crash_size"))
	if err != nil {
		return regions[0], nil
	}
	var best Range
	for _, r := range regions {
		if r.Size == size && r.Start >= best.Start {
			best = r
		}
	}
	if best.Size == 0 {
		return Range{}, fmt.Errorf("kexec: no reservation in %s has the %d bytes of kexec_crash_size: %v", filepath.Join(e.Proc, "iomem"), size, regions)
	}
	return best, nil
}

// kcoreLoads reads the program headers of /proc/kcore: the kernel image's
// mapping and each System RAM range with its linear-map address, as the
// running kernel maps them. They are the virtual addresses the dead kernel
// will have used, which userspace has no other way to learn on arm64
// (PHYS_OFFSET and the linear map's base are not exported elsewhere).
func (e Env) kcoreLoads() (text Load, ram []Load, err error) {
	name := filepath.Join(e.Proc, "kcore")
	progs, err := readProgs(name)
	if err != nil {
		return Load{}, nil, err
	}
	var all []Load
	for _, p := range progs {
		// Only RAM and the kernel image have a physical address (others
		// are ^0: vmalloc, modules, vmemmap).
		if elf.ProgType(p.Type) != elf.PT_LOAD || p.Paddr == ^uint64(0) || p.Memsz == 0 {
			continue
		}
		all = append(all, Load{Range{p.Paddr, p.Memsz}, p.Vaddr})
	}
	if len(all) < 2 {
		return Load{}, nil, fmt.Errorf("kexec: %s: %d mappings with a physical address, want the kernel image and RAM", name, len(all))
	}
	// The kernel image is mapped above the linear map on arm64 (since Linux
	// 5.4, whose VA layout put the linear map at the bottom), so it is the
	// mapping with the highest address.
	i := 0
	for j, l := range all {
		if l.Virt > all[i].Virt {
			i = j
		}
	}
	text = all[i]
	ram = slices.Delete(all, i, i+1)
	slices.SortFunc(ram, func(a, b Load) int { return cmp.Compare(a.Start, b.Start) })
	return text, ram, nil
}

// readProgs reads the program headers of a 64-bit little-endian ELF file.
// debug/elf is not used: it rejects program headers whose offsets it could
// not read, which /proc/kcore's need not satisfy, and it is only the
// headers that matter here.
func readProgs(name string) ([]elf.Prog64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("kexec: %w", err)
	}
	defer f.Close()
	var h elf.Header64
	if err := binary.Read(io.NewSectionReader(f, 0, ehdrSize), binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("kexec: %s: ELF header: %w", name, err)
	}
	if string(h.Ident[:4]) != elf.ELFMAG || elf.Class(h.Ident[elf.EI_CLASS]) != elf.ELFCLASS64 ||
		elf.Data(h.Ident[elf.EI_DATA]) != elf.ELFDATA2LSB || h.Phentsize != phdrSize || h.Phoff > 1<<20 {
		return nil, fmt.Errorf("kexec: %s: not a 64-bit little-endian ELF file with program headers", name)
	}
	progs := make([]elf.Prog64, h.Phnum)
	if err := binary.Read(io.NewSectionReader(f, int64(h.Phoff), int64(h.Phnum)*phdrSize), binary.LittleEndian, progs); err != nil {
		return nil, fmt.Errorf("kexec: %s: program headers: %w", name, err)
	}
	return progs, nil
}

// cpuNotes reads the physical address and size of each possible CPU's crash
// notes. A CPU without crash_notes (not present) has none.
func (e Env) cpuNotes() ([]Range, error) {
	dir := filepath.Join(e.Sys, "devices", "system", "cpu")
	b, err := os.ReadFile(filepath.Join(dir, "possible"))
	if err != nil {
		return nil, fmt.Errorf("kexec: %w", err)
	}
	cpus, err := parseCPUList(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("kexec: %s/possible: %w", dir, err)
	}
	var out []Range
	for _, cpu := range cpus {
		cd := filepath.Join(dir, "cpu"+strconv.Itoa(cpu))
		b, err := os.ReadFile(filepath.Join(cd, "crash_notes"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kexec: %w", err)
		}
		addr, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kexec: %s/crash_notes: %w", cd, err)
		}
		size, err := readUint(filepath.Join(cd, "crash_notes_size"))
		if err != nil {
			return nil, err
		}
		out = append(out, Range{addr, size})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kexec: no CPU has crash notes in %s", dir)
	}
	return out, nil
}

// vmcoreinfo reads where the running kernel keeps its VMCOREINFO note.
func (e Env) vmcoreinfo() (Range, error) {
	name := filepath.Join(e.Sys, "kernel", "vmcoreinfo")
	b, err := os.ReadFile(name)
	if err != nil {
		return Range{}, fmt.Errorf("kexec: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return Range{}, fmt.Errorf("kexec: %s: malformed %q", name, b)
	}
	// "%pa %x": the address with 0x, the size without.
	addr, err1 := strconv.ParseUint(strings.TrimPrefix(f[0], "0x"), 16, 64)
	size, err2 := strconv.ParseUint(f[1], 16, 64)
	if err1 != nil || err2 != nil || addr == 0 || size == 0 {
		return Range{}, fmt.Errorf("kexec: %s: malformed %q", name, b)
	}
	return Range{addr, size}, nil
}

// parseCPUList parses a kernel CPU list such as "0-3,8".
func parseCPUList(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("CPU list %q: %w", s, err)
			}
		}
		if a < 0 || b < a || b-a > 1<<16 {
			return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// CoreLayout reads what the crash kernel's ELF core header must describe:
// the CPUs' notes, VMCOREINFO, the kernel image and every RAM range outside
// the crash reservations (the crash kernel's own memory is not the dead
// kernel's).
func (e Env) CoreLayout(machine elf.Machine, crash []Range) (CoreLayout, error) {
	l := CoreLayout{Machine: machine}
	notes, err := e.cpuNotes()
	if err != nil {
		return l, err
	}
	info, err := e.vmcoreinfo()
	if err != nil {
		return l, err
	}
	l.Notes = append(notes, info)
	text, ram, err := e.kcoreLoads()
	if err != nil {
		return l, err
	}
	l.Loads = append(l.Loads, text)
	for _, r := range ram {
		parts := []Range{r.Range}
		for _, c := range crash {
			var next []Range
			for _, p := range parts {
				next = append(next, p.minus(c)...)
			}
			parts = next
		}
		for _, p := range parts {
			l.Loads = append(l.Loads, Load{p, r.Virt + (p.Start - r.Start)})
		}
	}
	return l, nil
}
