package vmcore_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/internal/synth"
)

// wantFormatError fails unless err is or wraps a *FormatError whose text
// contains want.
func wantFormatError(t *testing.T, name string, err error, want string) *vmcore.FormatError {
	t.Helper()
	var fe *vmcore.FormatError
	switch {
	case err == nil:
		t.Errorf("%s: no error", name)
	case !errors.As(err, &fe):
		t.Errorf("%s: %v: not a *FormatError", name, err)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%s: %q does not say %q", name, err, want)
	}
	return fe
}

// patchELF returns a copy of core with its ELF header and program headers
// changed by fn.
func patchELF(core []byte, fn func(h *elf.Header64, ph []elf.Prog64)) []byte {
	b := bytes.Clone(core)
	var h elf.Header64
	mustCode(binary.Decode(b, binary.LittleEndian, &h))
	ph := make([]elf.Prog64, h.Phnum)
	phoff := h.Phoff
	mustCode(binary.Decode(b[phoff:], binary.LittleEndian, ph))
	fn(&h, ph)
	mustCode(binary.Encode(b, binary.LittleEndian, &h))
	mustCode(binary.Encode(b[phoff:], binary.LittleEndian, ph))
	return b
}

func mustCode(_ int, err error) {
	if err != nil {
		panic(err)
	}
}

// patchNote returns a copy of core with text old of its VMCOREINFO note
// replaced by new, of the same length.
func patchNote(t *testing.T, core []byte, old, new string) []byte {
	t.Helper()
	if len(old) != len(new) || bytes.Count(core, []byte(old)) != 1 {
		t.Fatalf("cannot patch %q", old)
	}
	return bytes.Replace(core, []byte(old), []byte(new), 1)
}

func newCore(b []byte) (*vmcore.Core, error) {
	return vmcore.NewCore(bytes.NewReader(b), int64(len(b)))
}

// TestFormatErrorELF checks that each kind of malformed ELF core gives a
// *FormatError naming what failed. The synthetic core has a PT_NOTE and
// then three PT_LOADs.
func TestFormatErrorELF(t *testing.T) {
	core := synth.New(synth.Layout61).ELF()
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", core[:10], "ELF header: 64 bytes at 0x0: beyond end of file"},
		{"magic", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Ident[0] = 'X' }), "not an ELF file"},
		{"ELF32", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS32) }), "want ELF64 little-endian"},
		{"big-endian", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2MSB) }), "want ELF64 little-endian"},
		{"executable", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Type = uint16(elf.ET_EXEC) }), "not a core file"},
		{"riscv", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Machine = uint16(elf.EM_RISCV) }), "only x86_64 (62) and aarch64"},
		{"phentsize", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Phentsize = 32 }), "program header size 32"},
		{"no program headers", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Phnum = 0 }), "0 program headers"},
		{"program headers beyond EOF", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Phoff = uint64(len(core)) }), "program headers"},
		{"PN_XNUM beyond EOF", patchELF(core, func(h *elf.Header64, _ []elf.Prog64) { h.Phnum, h.Shoff = 0xffff, 1<<62 }), "section header 0 (PN_XNUM)"},
		{"filesz > memsz", patchELF(core, func(_ *elf.Header64, ph []elf.Prog64) { ph[1].Filesz = ph[1].Memsz + 1 }), "PT_LOAD 1: filesz"},
		{"PT_LOAD beyond EOF", patchELF(core, func(_ *elf.Header64, ph []elf.Prog64) { ph[2].Off = uint64(len(core)) }), "PT_LOAD 2: file range"},
		{"physical overflow", patchELF(core, func(_ *elf.Header64, ph []elf.Prog64) { ph[3].Paddr = ^uint64(0) }), "PT_LOAD 3: physical range"},
		{"PT_NOTE beyond EOF", patchELF(core, func(_ *elf.Header64, ph []elf.Prog64) { ph[0].Filesz = uint64(len(core)) }), "PT_NOTE 0: file range"},
		{"note overruns", patchELF(core, func(_ *elf.Header64, ph []elf.Prog64) { ph[0].Filesz = 100 }), "PT_NOTE 0: note at 0x0"},
		{"no PT_LOAD", patchELF(core, func(_ *elf.Header64, ph []elf.Prog64) {
			for i := 1; i < len(ph); i++ {
				ph[i].Type = uint32(elf.PT_NULL)
			}
		}), "no PT_LOAD segment"},
	} {
		_, err := newCore(tc.b)
		if fe := wantFormatError(t, tc.name, err, tc.want); fe != nil && !strings.HasPrefix(err.Error(), "vmcore: ") {
			t.Errorf("%s: %q lacks the package prefix", tc.name, err)
		}
	}
	fe := wantFormatError(t, "offset", errOf(newCore(patchELF(core, func(_ *elf.Header64, ph []elf.Prog64) { ph[2].Filesz = ph[2].Memsz + 1 }))), "PT_LOAD 2")
	if fe != nil && fe.Off != 64+2*56 {
		t.Errorf("PT_LOAD 2 error at offset %d, want its program header's (%d)", fe.Off, 64+2*56)
	}
}

// errOf returns the error of a call that returns a value and an error.
func errOf[T any](_ T, err error) error { return err }

// TestFormatErrorVMCOREINFO checks malformed VMCOREINFO text, alone and in
// a core (where it does not fail NewCore).
func TestFormatErrorVMCOREINFO(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"OSRELEASE=6.1\nno equals sign\n", "vmcoreinfo line 2"},
		{"=x\n", "not KEY=VALUE"},
		{"SYMBOL(x)=zz\n", "not a hexadecimal address"},
		{"SIZE(page)=sixty-four\n", "not a decimal number"},
		{"NUMBER(x)=0xg\n", "not a hexadecimal number"},
		{"NUMBER(x)=1e3\n", "not a number"},
		{"PAGESIZE=4k\n", "PAGESIZE"},
		{"KERNELOFFSET=zz\n", "KERNELOFFSET"},
	} {
		_, err := vmcore.ParseVMCOREINFO([]byte(tc.text))
		wantFormatError(t, tc.text, err, tc.want)
	}
	if fe := wantFormatError(t, "offset", errOf(vmcore.ParseVMCOREINFO([]byte("A=1\nB=2\nSIZE(x)=y\n"))), "line 3"); fe != nil && fe.Off != 8 {
		t.Errorf("line 3 error at offset %d, want 8", fe.Off)
	}

	core := synth.New(synth.Layout61).ELF()
	for _, tc := range []struct{ old, new, want string }{
		{"PAGESIZE=4096", "PAGESIZE=4095", "PAGESIZE 4095 is not a power of two"},
		{"SIZE(page)=64", "SIZE(page)=6x", "vmcoreinfo line"},
	} {
		c, err := newCore(patchNote(t, core, tc.old, tc.new))
		if err != nil {
			t.Fatalf("%s: NewCore: %v", tc.new, err)
		}
		_, err = c.VMCOREINFO()
		wantFormatError(t, tc.new, err, tc.want)
	}
}

// TestFormatErrorKernelData checks VMCOREINFO values that point to no
// page table or describe an impossible mem_section.
func TestFormatErrorKernelData(t *testing.T) {
	core := synth.New(synth.Layout61).ELF()
	const root = "SYMBOL(init_top_pgt)=ffffffff80300000" // physical 0x100000
	for _, tc := range []struct{ old, new, want string }{
		{root, "SYMBOL(init_top_pgt)=ffffffff80300008", "not page aligned"},
		{"SYMBOL(init_top_pgt)=ffff", "SYMBOL(init_top_pgt)=0000", "not a kernel text address"},
	} {
		c, err := newCore(patchNote(t, core, tc.old, tc.new))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.NewTranslator()
		wantFormatError(t, tc.new, err, tc.want)
	}

	// A root in the memory hole at 8 MiB.
	c, err := newCore(patchNote(t, core, root, "SYMBOL(init_top_pgt)=ffffffff80a00000"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.NewTranslator()
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.VirtToPhys(0xffff888000000000)
	if fe := wantFormatError(t, "root in a hole", err, "page table"); fe != nil && fe.Off != 0x800000 {
		t.Errorf("page table error at %#x, want 0x800000", fe.Off)
	}
	if !errors.Is(err, vmcore.ErrNotRAM) {
		t.Errorf("page table outside memory: %v does not wrap ErrNotRAM", err)
	}

	for _, tc := range []struct{ old, new, want string }{
		{"NUMBER(SECTION_SIZE_BITS)=27", "NUMBER(SECTION_SIZE_BITS)=99", "inconsistent mem_section geometry"},
		{"LENGTH(mem_section)=2048", "LENGTH(mem_section)=2047", "fits neither"},
		{"SIZE(mem_section)=16", "SIZE(mem_section)=-1", "SIZE(mem_section)=-1 out of range"},
	} {
		c, err := newCore(patchNote(t, core, tc.old, tc.new))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := c.NewTranslator()
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.NewMemMap(tr)
		wantFormatError(t, tc.new, err, tc.want)
	}
}
