package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Layout of a metadata area (lib/format_text/layout.h): a 512-byte
// mda_header, then a circular buffer holding the metadata text.
const (
	mdaHeaderSize = 512
	mdaVersion    = 1
	rawLocnSize   = 24 // offset u64, size u64, checksum u32, flags u32
	// rawLocnIgnored marks an area that pvchange --metadataignore told
	// lvm2 to stop updating: its text may be stale.
	rawLocnIgnored = 1
)

const mdaMagic = " LVM2 x[5A%r0N*>"

// MaxTextSize bounds the metadata text this package reads. lvm2 caps a
// copy at half the metadata area; real VGs need a few KiB to a few hundred.
// The bound keeps a corrupt size from costing a crash kernel (tens of MiB
// in all) its memory.
const MaxTextSize = 4 << 20

// ErrNoMetadata means a metadata area holds no metadata: the PV belongs to
// no VG, or the area is ignored (pvchange --metadataignore).
var ErrNoMetadata = errors.New("no metadata in the metadata area")

// ReadText returns the committed metadata text of the metadata area a: the
// NUL-terminated text lvm2 last wrote, read from the circular buffer
// (wrapping past the end of the area back to just after its header) and
// checked against the checksum the header holds.
func ReadText(r io.ReaderAt, a Area) ([]byte, error) {
	part := fmt.Sprintf("metadata area at %d", a.Offset)
	hdr := make([]byte, mdaHeaderSize)
	if _, err := r.ReadAt(hdr, int64(min(a.Offset, 1<<62))); err != nil {
		return nil, fmt.Errorf("lvm: reading the %s: %w", part, err)
	}
	le := binary.LittleEndian
	if want, got := le.Uint32(hdr), checksum(initialCRC, hdr[4:]); want != got {
		return nil, formatErr(part, "header checksum %#08x, computed %#08x", want, got)
	}
	switch {
	case string(hdr[4:20]) != mdaMagic:
		return nil, formatErr(part, "bad magic %q", hdr[4:20])
	case le.Uint32(hdr[20:]) != mdaVersion:
		return nil, formatErr(part, "version %d, want %d", le.Uint32(hdr[20:]), mdaVersion)
	case le.Uint64(hdr[24:]) != a.Offset:
		return nil, formatErr(part, "header says it starts at %d", le.Uint64(hdr[24:]))
	}
	size := le.Uint64(hdr[32:])
	if size < 2*mdaHeaderSize || size > 1<<40 {
		return nil, formatErr(part, "area size %d", size)
	}
	// raw_locn[0] is the committed metadata; [1] is a precommitted copy
	// that lvm2 only reads in the middle of its own activation.
	loc := hdr[40:]
	off, n, sum, flags := le.Uint64(loc), le.Uint64(loc[8:]), le.Uint32(loc[16:]), le.Uint32(loc[20:])
	if off == 0 && n == 0 || flags&rawLocnIgnored != 0 {
		return nil, ErrNoMetadata
	}
	switch {
	case off < mdaHeaderSize || off >= size:
		return nil, formatErr(part, "text offset %d outside the area of %d bytes", off, size)
	case n == 0 || n > size-mdaHeaderSize:
		return nil, formatErr(part, "text size %d does not fit the area of %d bytes", n, size)
	case n > MaxTextSize:
		return nil, formatErr(part, "text size %d is over the %d bytes this reader takes", n, MaxTextSize)
	}
	text := make([]byte, n)
	first := min(n, size-off)
	if _, err := r.ReadAt(text[:first], int64(a.Offset+off)); err != nil {
		return nil, fmt.Errorf("lvm: reading the text of the %s: %w", part, err)
	}
	if first < n {
		// Wrapped: the rest starts right after the header.
		if _, err := r.ReadAt(text[first:], int64(a.Offset+mdaHeaderSize)); err != nil {
			return nil, fmt.Errorf("lvm: reading the text of the %s: %w", part, err)
		}
	}
	if got := checksum(checksum(initialCRC, text[:first]), text[first:]); got != sum {
		return nil, formatErr(part, "text checksum %#08x, computed %#08x", sum, got)
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	return text, nil
}

// Disk is what one physical volume holds.
type Disk struct {
	Label *Label
	// VG is the newest metadata among the PV's metadata areas, nil when no
	// area holds any (a PV made with --metadatacopies 0, ignored areas,
	// or a PV in no VG).
	VG *VG
	// Passed are damaged metadata copies passed over because another
	// copy on this PV was good: lvm2 does the same, and repairs them at
	// its next write.
	Passed []error
}

// ReadDisk reads the label of a PV and the VG metadata of its metadata
// areas. When areas disagree (an update interrupted between the two
// copies), the copy with the higher seqno wins, as in lvm2. Damage in
// every copy that holds metadata is an error.
func ReadDisk(r io.ReaderAt) (*Disk, error) {
	l, err := ReadLabel(r)
	if err != nil {
		return nil, err
	}
	d := &Disk{Label: l}
	var bad []error
	for _, a := range l.MetadataAreas {
		text, err := ReadText(r, a)
		if errors.Is(err, ErrNoMetadata) {
			continue
		}
		var vg *VG
		if err == nil {
			vg, err = ParseVG(text)
		}
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if d.VG == nil || vg.Seqno > d.VG.Seqno {
			d.VG = vg
		}
	}
	if d.VG == nil && len(bad) > 0 {
		return nil, fmt.Errorf("lvm: PV %s: no good metadata copy: %w", l.PVID, errors.Join(bad...))
	}
	d.Passed = bad
	if d.VG != nil && d.VG.PVByID(l.PVID) == nil {
		return nil, formatErr("PV "+l.PVID, "its metadata (VG %s) does not list it", d.VG.Name)
	}
	return d, nil
}

// Newest returns the newest metadata (highest seqno) of the VG with id
// vgID among the PVs' disks, as lvm2 does when copies differ. A PV whose
// metadata names another VG is an error: it was reused since.
func Newest(disks []*Disk, vgID string) (*VG, error) {
	var vg *VG
	for _, d := range disks {
		switch {
		case d.VG == nil:
			continue
		case d.VG.ID != vgID:
			return nil, fmt.Errorf("PV %s belongs to VG %s (%s), not to VG %s", d.Label.PVID, d.VG.Name, d.VG.ID, vgID)
		case vg == nil || d.VG.Seqno > vg.Seqno:
			vg = d.VG
		}
	}
	if vg == nil {
		return nil, errors.New("none of its PVs holds a metadata copy (made with --metadatacopies 0, or metadata ignored): ukdump reads the metadata from the LV's own PVs")
	}
	return vg, nil
}
