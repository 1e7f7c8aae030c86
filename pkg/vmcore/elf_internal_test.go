package vmcore

import (
	"debug/elf"
	"encoding/binary"
	"testing"
)

// TestELFSizes checks the size constants used in bounds arithmetic against
// the encoded sizes of the structures they stand for.
func TestELFSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"elf.Prog64", binary.Size(elf.Prog64{}), elfPhdrSize},
		{"noteHeader", binary.Size(noteHeader{}), noteHeaderSize},
	} {
		if c.got != c.want {
			t.Errorf("binary.Size(%s) = %d, constant %d", c.name, c.got, c.want)
		}
	}
}
