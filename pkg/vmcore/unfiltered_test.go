package vmcore_test

import (
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/internal/synth"
)

// TestScannerUnfiltered: the scanner says why it cannot exclude pages by
// type (the collector then writes an unfiltered dump), for each way the
// dead kernel's data can make filtering impossible, and says nothing when
// filtering works or the level asks for none.
func TestScannerUnfiltered(t *testing.T) {
	core := synth.New(synth.Layout61).ELF()
	const root = "SYMBOL(init_top_pgt)=ffffffff80300000"
	for _, tc := range []struct {
		name     string
		old, new string
		level    vmcore.Level
		want     string
	}{
		{"intact", "", "", vmcore.MaxLevel, ""},
		{"zero pages only", root, "SYMBOL(init_top_pgt)=ffffffff80300008", vmcore.LevelZero, ""},
		{"page table root not aligned", root, "SYMBOL(init_top_pgt)=ffffffff80300008", vmcore.MaxLevel, "cannot locate struct pages: "},
		{"page table root in a hole", root, "SYMBOL(init_top_pgt)=ffffffff80a00000", vmcore.MaxLevel, "cannot locate struct pages: "},
		{"mem_section geometry", "NUMBER(SECTION_SIZE_BITS)=27", "NUMBER(SECTION_SIZE_BITS)=99", vmcore.MaxLevel, "inconsistent mem_section geometry"},
		{"no struct page size", "SIZE(page)=", "SIZE(xxxx)=", vmcore.MaxLevel, "VMCOREINFO lacks the layout of struct page"},
	} {
		b := core
		if tc.old != "" {
			b = patchNote(t, core, tc.old, tc.new)
		}
		c, err := newCore(b)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.NewScanner(tc.level, 0)
		if err != nil {
			t.Fatalf("%s: NewScanner: %v", tc.name, err)
		}
		got := s.Unfiltered()
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: Unfiltered = %v, want nil", tc.name, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("%s: Unfiltered = %v, want one saying %q", tc.name, got, tc.want)
		}
	}
}
