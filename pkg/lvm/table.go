package lvm

import (
	"fmt"
	"strconv"
	"strings"
)

// Target is one line of an LV's device-mapper table, with its PVs named
// by id: the crash kernel puts in the device numbers it finds them at.
// Sizes and offsets are in 512-byte sectors.
type Target struct {
	// Start and Length place the line within the LV.
	Start, Length uint64
	// ChunkSize is the stripe size of a striped line (more than one
	// area); 0 for a linear one.
	ChunkSize uint64
	// Areas are where the data lies: one for linear, one per stripe.
	Areas []PVArea
}

// PVArea is a place on a PV.
type PVArea struct {
	// PVID is the PV's id in its written (dashed) form.
	PVID string
	// Offset is from the start of the PV device, in sectors.
	Offset uint64
}

// Type is the device-mapper target type: lvm2 loads a striped segment
// with one stripe as linear.
func (t Target) Type() string {
	if len(t.Areas) == 1 {
		return "linear"
	}
	return "striped"
}

// Params are the target's parameters, with each PV given as dev returns
// it (a "major:minor" or a path): "<dev> <offset>" for linear,
// "<stripes> <chunk> <dev> <offset>..." for striped, as lvm2 writes them.
func (t Target) Params(dev func(pvID string) string) string {
	var b strings.Builder
	if len(t.Areas) != 1 {
		fmt.Fprintf(&b, "%d %d ", len(t.Areas), t.ChunkSize)
	}
	for i, a := range t.Areas {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(dev(a.PVID) + " " + strconv.FormatUint(a.Offset, 10))
	}
	return b.String()
}

// Line is the table line as dmsetup table prints it.
func (t Target) Line(dev func(pvID string) string) string {
	return fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type(), t.Params(dev))
}

// unsupported names what a segment type is, for the refusal.
func unsupported(segType string) string {
	kinds := []struct{ prefix, what string }{
		{"thin", "a thin volume or pool"},
		{"raid", "a RAID volume"},
		{"mirror", "a mirror"},
		{"cache", "a cached volume"},
		{"writecache", "a cached volume"},
		{"snapshot", "a snapshot"},
		{"vdo", "a VDO volume"},
		{"integrity", "an integrity volume"},
	}
	for _, k := range kinds {
		if strings.HasPrefix(segType, k.prefix) {
			return k.what
		}
	}
	return "a segment type ukdump does not know"
}

// Table derives the device-mapper table lvm2 loads for lv, one line per
// segment: a striped segment with one stripe is linear, with several a
// striped target whose chunk is the stripe size; each area starts at
// pe_start + extent × extent_size on its PV. Only what a dump can safely
// be written through is mapped: a read-only, hidden or locked LV, a
// snapshot origin and any segment type but striped are refused with
// ErrUnsupported.
func (vg *VG) Table(lv *LV) ([]Target, error) {
	who := vg.Name + "/" + lv.Name
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("lvm: %s is %s: %w", who, fmt.Sprintf(format, args...), ErrUnsupported)
	}
	for _, o := range vg.LVs {
		for _, s := range o.Segments {
			switch {
			case s.Type != "snapshot":
			case s.Origin == lv.Name:
				return nil, refuse("the origin of snapshot %s, whose copy-on-write a plain mapping would bypass", s.COW)
			case s.COW == lv.Name:
				return nil, refuse("a snapshot of %s, whose data a plain mapping would not show", s.Origin)
			}
		}
	}
	// After the snapshot checks: lvm2 hides a snapshot's store.
	switch {
	case Has(lv.Status, "LOCKED") || Has(lv.Status, "PVMOVE"):
		return nil, refuse("being moved (pvmove in progress); finish or abort it and run \"ukdump reload\"")
	case !Has(lv.Status, "VISIBLE"):
		return nil, refuse("an internal LV of another one")
	case !Has(lv.Status, "WRITE"):
		return nil, refuse("read-only: a dump cannot be written to it")
	}
	var table []Target
	for i, s := range lv.Segments {
		if s.Type != "striped" {
			return nil, refuse("%s (segment %d has type %q); ukdump maps linear and striped LVs only", unsupported(s.Type), i+1, s.Type)
		}
		if len(s.Stripes) == 0 {
			return nil, formatErr("VG "+vg.Name+" LV "+lv.Name, "segment %d has no stripes", i+1)
		}
		t := Target{Start: s.StartExtent * vg.ExtentSize, Length: s.ExtentCount * vg.ExtentSize}
		if len(s.Stripes) > 1 {
			t.ChunkSize = s.StripeSize
		}
		perStripe := s.ExtentCount / uint64(len(s.Stripes))
		for _, st := range s.Stripes {
			pv := vg.PVByName(st.PV)
			switch {
			case pv == nil:
				return nil, refuse("on %q, which is no PV of the VG (an LV stacked on another one)", st.PV)
			case Has(pv.Status, "MISSING"):
				return nil, fmt.Errorf("lvm: %s: PV %s (%s) is marked missing in the metadata", who, pv.ID, pv.Device)
			case st.Extent > pv.PECount || perStripe > pv.PECount-st.Extent:
				return nil, formatErr("VG "+vg.Name+" LV "+lv.Name, "segment %d: extents %d+%d beyond the %d of %s", i+1, st.Extent, perStripe, pv.PECount, pv.Name)
			}
			t.Areas = append(t.Areas, PVArea{PVID: pv.ID, Offset: pv.PEStart + st.Extent*vg.ExtentSize})
		}
		table = append(table, t)
	}
	if len(table) == 0 {
		return nil, formatErr("VG "+vg.Name+" LV "+lv.Name, "no segments")
	}
	return table, nil
}

// PVIDs lists the PVs a table uses, each once, in order of first use.
func PVIDs(table []Target) []string {
	var ids []string
	seen := map[string]bool{}
	for _, t := range table {
		for _, a := range t.Areas {
			if !seen[a.PVID] {
				seen[a.PVID] = true
				ids = append(ids, a.PVID)
			}
		}
	}
	return ids
}

// Agree reports whether two tables of one LV map every sector that both
// map to the same place: they are equal, or one is the other grown or
// shrunk at its end (lvextend, lvreduce). A dump may go through the
// current table then: what the filesystem held at "ukdump load" is still
// where it was.
func Agree(a, b []Target) bool {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if equalTarget(a[i], b[i]) {
			continue
		}
		// Only the last line both tables have may differ, only in its
		// length, and then the table with the shorter line must end
		// there: past it the other maps more of the same areas.
		if i != n-1 || !sameButLength(a[i], b[i]) {
			return false
		}
		short := a
		if b[i].Length < a[i].Length {
			short = b
		}
		return len(short) == n
	}
	return true
}

func sameButLength(a, b Target) bool {
	a.Length, b.Length = 0, 0
	return equalTarget(a, b)
}

func equalTarget(a, b Target) bool {
	if a.Start != b.Start || a.Length != b.Length || a.ChunkSize != b.ChunkSize || len(a.Areas) != len(b.Areas) {
		return false
	}
	for i := range a.Areas {
		if a.Areas[i] != b.Areas[i] {
			return false
		}
	}
	return true
}
