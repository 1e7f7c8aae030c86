package vmcore_test

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/internal/synth"
)

// smallCore is a seed for FuzzCore: the ELF header, program headers and
// notes of the synthetic core, with PT_LOAD segments shrunk to the file.
func smallCore(l synth.Layout) []byte {
	b := synth.New(l).ELF()[:0x2000] // headers and notes only
	return patchELF(b, func(_ *elf.Header64, ph []elf.Prog64) {
		for i := range ph {
			if elf.ProgType(ph[i].Type) == elf.PT_LOAD { // point into the header area
				ph[i].Off, ph[i].Filesz, ph[i].Memsz = 0, 0x1000, 0x2000
			}
		}
	})
}

// FuzzCore parses arbitrary ELF cores and exercises every reader on them:
// nothing may panic or allocate without bound, and a core that does not
// parse is a *FormatError (the input is in memory: no I/O error can occur).
func FuzzCore(f *testing.F) {
	f.Add(smallCore(synth.Layout61))
	f.Add(smallCore(synth.Layout73))
	f.Add(smallCore(synth.Layout73ARM64))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(fuzzCore)
}

func fuzzCore(t *testing.T, data []byte) {
	watchdog := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("FuzzCore: input of %d bytes takes more than 5 s", len(data))) })
	defer watchdog.Stop()
	{
		c, err := vmcore.NewCore(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			mustFormatError(t, "NewCore", err)
			return
		}
		if _, err := c.VMCOREINFO(); err != nil && !errors.Is(err, vmcore.ErrNoVMCOREINFO) {
			mustFormatError(t, "VMCOREINFO", err)
		}
		_ = c.Segments()
		_ = c.Notes()
		_ = c.NrCPUs()
		off, size := c.VMCOREINFOLocation()
		if off < 0 || size < 0 || off+size > len(c.NoteData()) {
			t.Fatalf("VMCOREINFO location %d+%d outside %d note bytes", off, size, len(c.NoteData()))
		}
		page := make([]byte, c.PageSize())
		for _, pfn := range []uint64{0, 1, c.MaxPFN() - 1, c.MaxPFN()} {
			_ = c.ReadPage(pfn, page)
		}
		if tr, err := c.NewTranslator(); err == nil {
			buf := make([]byte, 64)
			for _, v := range []uint64{0xffffffff81000000, 0xffff888000000000, 0xffffea0000000000, 0xffff800080000000, 0xfffffc0000000000} {
				_ = tr.ReadVirt(v, buf)
			}
		}
		if c.MaxPFN() > 1<<16 {
			return // keep each run short
		}
		for _, lv := range []vmcore.Level{31, 1} {
			s, err := c.NewScanner(lv, 0)
			if err != nil {
				t.Fatalf("NewScanner(%d): %v", lv, err)
			}
			var ch vmcore.Chunk
			for {
				ok, err := s.Next(&ch)
				if err != nil || !ok {
					break
				}
			}
		}
	}
}

// FuzzVMCOREINFO parses arbitrary note text; what parses must survive a
// round trip through String, what does not is a *FormatError.
func FuzzVMCOREINFO(f *testing.F) {
	f.Add([]byte(synth.Layout61.VMCOREINFO()))
	f.Add([]byte(synth.Layout73.VMCOREINFO()))
	f.Add([]byte("NUMBER(x)=0xffffffffffffffff\nNUMBER(y)=-129\nSYMBOL(a)=ffff\n\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := vmcore.ParseVMCOREINFO(data)
		if err != nil {
			mustFormatError(t, "ParseVMCOREINFO", err)
			return
		}
		_, _ = v.PageSize()
		_, _ = v.CrashTime()
		_, _ = v.KernelOffset()
		_, _ = v.PhysBase()
		v2, err := vmcore.ParseVMCOREINFO([]byte(v.String()))
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if v.String() != v2.String() {
			t.Fatalf("round trip changed the text")
		}
		for _, k := range v.Keys() {
			a, _ := v.Get(k)
			b, _ := v2.Get(k)
			if a != b {
				t.Fatalf("key %q: %q then %q", k, a, b)
			}
		}
		if _, err := vmcore.NewClassifier(v, 31); err != nil {
			t.Fatalf("NewClassifier: %v", err)
		}
	})
}

func mustFormatError(t *testing.T, what string, err error) {
	t.Helper()
	if fe := (*vmcore.FormatError)(nil); !errors.As(err, &fe) {
		t.Fatalf("%s: %v: not a *FormatError", what, err)
	}
}
