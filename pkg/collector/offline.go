package collector

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/printk"
)

// IsKdump reports whether the file at name is kdump-compressed (else it
// is taken for an ELF core).
func IsKdump(name string) (bool, error) {
	f, err := os.Open(name)
	if err != nil {
		return false, fmt.Errorf("collector: %w", err)
	}
	defer f.Close()
	sig := make([]byte, 8)
	if _, err := io.ReadFull(f, sig); err != nil {
		return false, fmt.Errorf("collector: %s: %w", name, err)
	}
	return string(sig) == "KDUMP   ", nil
}

// dumpMemory reads physical memory out of a kdump-compressed dump, for the
// page-table walk behind the kernel log.
type dumpMemory struct {
	d    *diskdump.Dump
	page []byte
}

// ReadPhys implements vmcore.PhysReader.
func (m *dumpMemory) ReadPhys(buf []byte, paddr uint64) error {
	ps := uint64(len(m.page))
	for len(buf) > 0 {
		pfn, off := paddr/ps, paddr%ps
		if err := m.d.ReadPage(pfn, m.page); err != nil {
			return err
		}
		n := copy(buf, m.page[off:])
		buf, paddr = buf[n:], paddr+uint64(n)
	}
	return nil
}

// DmesgFile writes the kernel log held in a dump file of either format.
func DmesgFile(name string, w io.Writer) error {
	kdump, err := IsKdump(name)
	if err != nil {
		return err
	}
	if !kdump {
		core, err := vmcore.Open(name)
		if err != nil {
			return err
		}
		defer core.Close()
		return Dmesg(core, w, DmesgOptions{})
	}
	d, err := diskdump.OpenFile(name)
	if err != nil {
		return err
	}
	defer d.Close()
	info, err := vmcore.ParseVMCOREINFO(d.VMCOREINFO())
	if err != nil {
		return fmt.Errorf("collector: %s: %w", name, err)
	}
	// The dump's machine, not this one's: an arm64 dump is read on an
	// x86_64 host and the reverse.
	uts := d.Header().UTS
	m, ok := uts.ELFMachine()
	if !ok {
		return fmt.Errorf("collector: %s: dump header names machine %q, which ukdump does not read", name, uts.Machine)
	}
	t, err := vmcore.NewTranslator(&dumpMemory{d: d, page: make([]byte, d.Header().PageSize)}, info, m)
	if err != nil {
		return fmt.Errorf("collector: %s: %w", name, err)
	}
	return printk.Dump(w, t, info, printk.Options{})
}

// Info describes a dump file for "ukdump info".
type Info struct {
	Format      diskdump.Format
	Release     string
	CrashTime   time.Time
	PageSize    int
	RAMPages    uint64
	DumpedPages uint64
	DumpLevel   int
	Compression diskdump.Compression
	Incomplete  bool
}

// String formats i for people.
func (i Info) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "format:        %s\nkernel:        %s\ncrash time:    %s\n", i.Format, i.Release, i.CrashTime.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "page size:     %d\nRAM pages:     %d (%d MiB)\ndumped pages:  %d (%d MiB)\n",
		i.PageSize, i.RAMPages, i.RAMPages*uint64(i.PageSize)>>20, i.DumpedPages, i.DumpedPages*uint64(i.PageSize)>>20)
	if i.Format == diskdump.KdumpFormat {
		fmt.Fprintf(&b, "dump level:    %d\ncompression:   %s\n", i.DumpLevel, i.Compression)
	}
	if i.Incomplete {
		fmt.Fprintf(&b, "INCOMPLETE:    the dump stopped early; missing pages read as errors\n")
	}
	return b.String()
}

// FileInfo reads the description of a dump file of either format.
func FileInfo(name string) (*Info, error) {
	kdump, err := IsKdump(name)
	if err != nil {
		return nil, err
	}
	if kdump {
		d, err := diskdump.OpenFile(name)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		h := d.Header()
		return &Info{Format: diskdump.KdumpFormat, Release: h.UTS.Release, CrashTime: h.CrashTime, PageSize: h.PageSize,
			RAMPages: d.NumRAM(), DumpedPages: d.NumDumpable(), DumpLevel: h.DumpLevel,
			Compression: d.Compression(), Incomplete: d.Incomplete()}, nil
	}
	core, err := vmcore.Open(name)
	if err != nil {
		return nil, err
	}
	defer core.Close()
	// The kernel image's second PT_LOAD (x86_64 and arm64 alike) overlaps
	// RAM: RAMPages counts each page frame once.
	i := &Info{Format: diskdump.ELFFormat, PageSize: core.PageSize(), RAMPages: core.RAMPages()}
	i.DumpedPages = i.RAMPages
	if info, err := core.VMCOREINFO(); err == nil {
		i.Release = info.OSRelease()
		i.CrashTime, _ = info.CrashTime()
	}
	return i, nil
}
