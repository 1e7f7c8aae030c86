package lvm

import (
	"math"
	"slices"
	"strconv"
)

// VG is a volume group as its metadata text describes it. Sizes are in
// 512-byte sectors, as in the text.
type VG struct {
	Name string
	// ID is the VG's id in its written (dashed) form.
	ID string
	// Seqno counts the metadata's updates: every change writes seqno+1.
	Seqno uint64
	// ExtentSize is the size of one extent, in sectors.
	ExtentSize uint64
	Status     []string
	PVs        []PV
	LVs        []LV
}

// PV is a physical volume of a VG.
type PV struct {
	// Name is the PV's name within the metadata (pv0, pv1...), which
	// segments use to refer to it.
	Name string
	ID   string
	// Device is the path the PV had when lvm2 last wrote the metadata: a
	// hint for people, not a way to find it.
	Device string
	Status []string
	// DevSize is the device size in sectors (0 when not recorded).
	DevSize uint64
	// PEStart is where the first extent starts, in sectors.
	PEStart uint64
	PECount uint64
}

// LV is a logical volume.
type LV struct {
	Name string
	ID   string
	// Status holds READ, WRITE, VISIBLE, LOCKED, PVMOVE...
	Status []string
	// Flags holds the flags lvm2 keeps apart from Status
	// (ACTIVATION_SKIP, NOAUTOACTIVATE...).
	Flags    []string
	Segments []Segment
}

// Segment is a run of an LV's extents of one type.
type Segment struct {
	StartExtent, ExtentCount uint64
	// Type is "striped" (which with one stripe is linear) or anything
	// else lvm2 knows: "thin", "raid1", "mirror", "snapshot"... Only
	// striped segments have Stripes.
	Type string
	// StripeSize is the chunk size of a striped segment with several
	// stripes, in sectors.
	StripeSize uint64
	Stripes    []Stripe
	// Origin is the LV a "snapshot" segment is a snapshot of, COW the LV
	// holding its copy-on-write store (the one users know as the
	// snapshot; "merging_store" while it merges back into the origin).
	Origin, COW string
}

// Stripe is where one stripe of a segment starts: a PV (by its Name in
// the metadata) and an extent on it.
type Stripe struct {
	PV     string
	Extent uint64
}

// Has reports whether a status or flag list holds s.
func Has(list []string, s string) bool { return slices.Contains(list, s) }

// PVByID returns the PV with the given id, or nil.
func (vg *VG) PVByID(id string) *PV { return find(vg.PVs, func(p *PV) bool { return p.ID == id }) }

// PVByName returns the PV named name in the metadata, or nil.
func (vg *VG) PVByName(name string) *PV {
	return find(vg.PVs, func(p *PV) bool { return p.Name == name })
}

// LVByID returns the LV with the given id, or nil.
func (vg *VG) LVByID(id string) *LV { return find(vg.LVs, func(l *LV) bool { return l.ID == id }) }

// LVByName returns the LV named name, or nil.
func (vg *VG) LVByName(name string) *LV {
	return find(vg.LVs, func(l *LV) bool { return l.Name == name })
}

func find[T any](items []T, match func(*T) bool) *T {
	for i := range items {
		if match(&items[i]) {
			return &items[i]
		}
	}
	return nil
}

// Bounds of the values ParseVG takes: lvm2 keeps extent counts and the
// extent size in 32 bits, and no device has 2^56 sectors.
const (
	maxExtents = math.MaxUint32
	maxSectors = 1 << 56
)

// ParseVG parses the metadata text of a VG, as lvm2 writes it into a
// metadata area (or vgcfgbackup into a file).
func ParseVG(text []byte) (*VG, error) {
	if len(text) > MaxTextSize {
		return nil, formatErr("metadata text", "%d bytes, over the %d this reader takes", len(text), MaxTextSize)
	}
	top, err := parseText(text)
	if err != nil {
		return nil, err
	}
	root := &node{key: "metadata text", section: true, children: top}
	d := decoder{}
	if c := d.str(root, "contents", true); d.err == nil && c != "Text Format Volume Group" {
		return nil, formatErr("metadata text", "contents %q is not a volume group", c)
	}
	if v := d.uint(root, "version", true, math.MaxUint32); d.err == nil && v != 1 {
		return nil, formatErr("metadata text", "format version %d, want 1", v)
	}
	if d.err != nil {
		return nil, d.err
	}
	var vgn *node
	for _, n := range top {
		if n.section {
			if vgn != nil {
				return nil, formatErr("metadata text", "two volume groups, %q and %q", vgn.key, n.key)
			}
			vgn = n
		}
	}
	if vgn == nil {
		return nil, formatErr("metadata text", "no volume group section")
	}
	return d.vg(vgn)
}

// decoder keeps the first error, so the field reads stay short.
type decoder struct {
	err error
}

func (d *decoder) fail(n *node, format string, args ...any) {
	if d.err == nil {
		d.err = formatErr(n.key+" (line "+strconv.Itoa(n.line)+")", format, args...)
	}
}

// child returns the entry key of section n; duplicates are refused, since
// lvm2 never writes them and they would make the meaning unclear.
func (d *decoder) child(n *node, key string, section, required bool) *node {
	var found *node
	for _, c := range n.children {
		if c.key != key {
			continue
		}
		if found != nil {
			d.fail(n, "%q appears twice", key)
			return nil
		}
		found = c
	}
	switch {
	case found == nil && required:
		d.fail(n, "no %q", key)
	case found != nil && found.section != section:
		what := "a value"
		if section {
			what = "a section"
		}
		d.fail(found, "is not %s", what)
		return nil
	}
	return found
}

func (d *decoder) str(n *node, key string, required bool) string {
	c := d.child(n, key, false, required)
	if c == nil {
		return ""
	}
	if c.value.kind != kindString {
		d.fail(c, "is not a string")
		return ""
	}
	return c.value.str
}

// uint reads a non-negative integer up to max.
func (d *decoder) uint(n *node, key string, required bool, max uint64) uint64 {
	c := d.child(n, key, false, required)
	if c == nil {
		return 0
	}
	if c.value.kind != kindInt || c.value.num < 0 || uint64(c.value.num) > max {
		d.fail(c, "is not an integer from 0 to %d", max)
		return 0
	}
	return uint64(c.value.num)
}

// strings reads an array of strings, such as status = ["READ", "WRITE"].
func (d *decoder) strings(n *node, key string) []string {
	c := d.child(n, key, false, false)
	if c == nil {
		return nil
	}
	if c.value.kind != kindArray {
		d.fail(c, "is not a list")
		return nil
	}
	var out []string
	for _, v := range c.value.items {
		if v.kind != kindString {
			d.fail(c, "holds a value that is not a string")
			return nil
		}
		out = append(out, v.str)
	}
	return out
}

func (d *decoder) id(n *node) string {
	s := d.str(n, "id", true)
	if d.err == nil && !ValidID(s) {
		d.fail(n, "id %q is not an lvm2 id", s)
	}
	return s
}

func (d *decoder) name(n *node) string {
	if !ValidName(n.key) {
		d.fail(n, "%q is not a valid VG, PV or LV name", n.key)
	}
	return n.key
}

func (d *decoder) vg(n *node) (*VG, error) {
	vg := &VG{Name: d.name(n), ID: d.id(n), Status: d.strings(n, "status")}
	vg.Seqno = d.uint(n, "seqno", true, math.MaxUint32)
	vg.ExtentSize = d.uint(n, "extent_size", true, math.MaxUint32)
	if d.err == nil && vg.ExtentSize == 0 {
		d.fail(n, "extent_size 0")
	}
	if pvs := d.child(n, "physical_volumes", true, true); pvs != nil {
		for _, c := range pvs.children {
			if c.section {
				vg.PVs = append(vg.PVs, d.pv(c, vg.ExtentSize))
			}
		}
	}
	if lvs := d.child(n, "logical_volumes", true, false); lvs != nil {
		for _, c := range lvs.children {
			if c.section {
				vg.LVs = append(vg.LVs, d.lv(c))
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return vg, d.unique(n, vg)
}

func (d *decoder) pv(n *node, extentSize uint64) PV {
	pv := PV{Name: d.name(n), ID: d.id(n), Device: d.str(n, "device", false), Status: d.strings(n, "status")}
	pv.DevSize = d.uint(n, "dev_size", false, maxSectors)
	pv.PEStart = d.uint(n, "pe_start", true, maxSectors)
	pv.PECount = d.uint(n, "pe_count", true, maxExtents)
	// Checked here so that every offset computed from a PV fits 64 bits.
	if d.err == nil && pv.PECount != 0 && extentSize > (maxSectors-pv.PEStart)/pv.PECount {
		d.fail(n, "pe_start %d + %d extents of %d sectors is beyond any device", pv.PEStart, pv.PECount, extentSize)
	}
	return pv
}

func (d *decoder) lv(n *node) LV {
	lv := LV{Name: d.name(n), ID: d.id(n), Status: d.strings(n, "status"), Flags: d.strings(n, "flags")}
	count := d.uint(n, "segment_count", true, maxExtents)
	for _, c := range n.children {
		if c.section {
			lv.Segments = append(lv.Segments, d.segment(c))
		}
	}
	if d.err == nil && uint64(len(lv.Segments)) != count {
		d.fail(n, "segment_count %d, but %d segments", count, len(lv.Segments))
	}
	// lvm2 keeps segments ordered by start_extent and without gaps.
	next := uint64(0)
	for i, s := range lv.Segments {
		if d.err == nil && s.StartExtent != next {
			d.fail(n, "segment %d starts at extent %d, want %d", i+1, s.StartExtent, next)
		}
		next += s.ExtentCount
	}
	if d.err == nil && next > maxExtents {
		d.fail(n, "%d extents", next)
	}
	return lv
}

func (d *decoder) segment(n *node) Segment {
	s := Segment{
		StartExtent: d.uint(n, "start_extent", true, maxExtents),
		ExtentCount: d.uint(n, "extent_count", true, maxExtents),
		Type:        d.str(n, "type", false),
	}
	if s.Type == "" {
		s.Type = "striped" // lvm2's default when a segment names none
	}
	if d.err == nil && s.ExtentCount == 0 {
		d.fail(n, "extent_count 0")
	}
	switch s.Type {
	case "striped":
		d.stripes(n, &s)
	case "snapshot":
		s.Origin = d.str(n, "origin", true)
		s.COW = d.str(n, "cow_store", false)
		if m := d.str(n, "merging_store", false); m != "" {
			s.COW = m
		}
	}
	return s
}

func (d *decoder) stripes(n *node, s *Segment) {
	count := d.uint(n, "stripe_count", true, 1<<16)
	if count > 1 {
		s.StripeSize = d.uint(n, "stripe_size", true, math.MaxUint32)
		if d.err == nil && s.StripeSize == 0 {
			d.fail(n, "stripe_size 0")
		}
	}
	c := d.child(n, "stripes", false, true)
	if d.err != nil {
		return
	}
	items := c.value.items
	if c.value.kind != kindArray || count == 0 || uint64(len(items)) != 2*count {
		d.fail(c, "want %d pairs of PV name and extent", count)
		return
	}
	for i := 0; i < len(items); i += 2 {
		pv, pe := items[i], items[i+1]
		if pv.kind != kindString || pe.kind != kindInt || pe.num < 0 || pe.num > maxExtents {
			d.fail(c, "pair %d is not a PV name and an extent", i/2+1)
			return
		}
		s.Stripes = append(s.Stripes, Stripe{PV: pv.str, Extent: uint64(pe.num)})
	}
	if s.ExtentCount%count != 0 {
		d.fail(n, "%d extents do not split into %d stripes", s.ExtentCount, count)
	}
}

// unique refuses two PVs or LVs with one name or id: lookups by either
// would be ambiguous.
func (d *decoder) unique(n *node, vg *VG) error {
	seen := map[string]bool{}
	for _, pv := range vg.PVs {
		for _, k := range []string{"PVs named " + pv.Name, "PVs with id " + pv.ID} {
			if seen[k] {
				return formatErr(n.key, "two %s", k)
			}
			seen[k] = true
		}
	}
	for _, lv := range vg.LVs {
		for _, k := range []string{"LVs named " + lv.Name, "LVs with id " + lv.ID} {
			if seen[k] {
				return formatErr(n.key, "two %s", k)
			}
			seen[k] = true
		}
	}
	return nil
}
