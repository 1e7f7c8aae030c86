package lvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Label is what the LVM2 label of a physical volume says.
type Label struct {
	// Sector is where the label is: one of the first four 512-byte
	// sectors (normally 1).
	Sector int
	// PVID is the PV's id in its written form (6-4-4-4-4-4-6).
	PVID string
	// DevSize is the device size pvcreate saw, in bytes.
	DevSize uint64
	// DataAreas hold the extents; normally one, starting at pe_start and
	// with size 0 (to the end of the device).
	DataAreas []Area
	// MetadataAreas hold the VG metadata: none, one at the start or a
	// second one at the end of the device.
	MetadataAreas []Area
}

// Area is a region of the device, in bytes.
type Area struct {
	Offset, Size uint64
}

// Layout of the label sector (lib/label/label.h, lib/format_text/layout.h).
const (
	sectorSize       = 512
	labelScanSectors = 4
	labelHeaderSize  = 32 // id[8] sector u64 crc u32 offset u32 type[8]
	labelCRCFrom     = 20 // the crc covers the sector from offset_xl on
	pvHeaderFixed    = idLen + 8
	diskLocnSize     = 16
)

const (
	labelID   = "LABELONE"
	labelType = "LVM2 001"
)

// ReadLabel finds and checks the LVM2 label in the first four sectors of
// r, as lvm2 does: "LABELONE" in a sector that names itself, with a good
// checksum and the "LVM2 001" type. A device without one gives ErrNoLabel;
// a label that is there but damaged gives a FormatError.
func ReadLabel(r io.ReaderAt) (*Label, error) {
	buf := make([]byte, labelScanSectors*sectorSize)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("lvm: reading the label: %w", err)
	}
	var damaged error
	for s := 0; (s+1)*sectorSize <= n; s++ {
		sec := buf[s*sectorSize : (s+1)*sectorSize]
		if string(sec[:8]) != labelID {
			continue
		}
		l, err := parseLabel(sec, s)
		if err == nil {
			return l, nil
		}
		if damaged == nil {
			damaged = err
		}
	}
	if damaged != nil {
		return nil, damaged
	}
	return nil, ErrNoLabel
}

func parseLabel(sec []byte, s int) (*Label, error) {
	part := fmt.Sprintf("label at sector %d", s)
	le := binary.LittleEndian
	if got := le.Uint64(sec[8:]); got != uint64(s) {
		return nil, formatErr(part, "it says it is at sector %d", got)
	}
	if want, got := le.Uint32(sec[16:]), checksum(initialCRC, sec[labelCRCFrom:]); want != got {
		return nil, formatErr(part, "checksum %#08x, computed %#08x", want, got)
	}
	if string(sec[24:32]) != labelType {
		return nil, formatErr(part, "type %q is not %q", sec[24:32], labelType)
	}
	off := le.Uint32(sec[20:])
	if off < labelHeaderSize || off > sectorSize-pvHeaderFixed {
		return nil, formatErr(part, "pv_header offset %d outside the sector", off)
	}
	p := sec[off:]
	l := &Label{Sector: s, PVID: FormatID(string(p[:idLen])), DevSize: le.Uint64(p[idLen:])}
	if l.PVID == "" {
		return nil, formatErr(part, "PV id %q is not an lvm2 id", p[:idLen])
	}
	p = p[pvHeaderFixed:]
	var err error
	if l.DataAreas, p, err = areaList(p); err != nil {
		return nil, formatErr(part, "data areas: %v", err)
	}
	if l.MetadataAreas, _, err = areaList(p); err != nil {
		return nil, formatErr(part, "metadata areas: %v", err)
	}
	return l, nil
}

// areaList reads a list of disk_locn ended by one with offset 0, which
// must end within the label sector (lvm2's label_check_pv_layout).
func areaList(p []byte) ([]Area, []byte, error) {
	var areas []Area
	for {
		if len(p) < diskLocnSize {
			return nil, nil, errors.New("list runs past the end of the label sector")
		}
		a := Area{Offset: binary.LittleEndian.Uint64(p), Size: binary.LittleEndian.Uint64(p[8:])}
		p = p[diskLocnSize:]
		if a.Offset == 0 {
			return areas, p, nil
		}
		areas = append(areas, a)
	}
}
