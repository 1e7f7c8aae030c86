// Package lvm reads LVM2 physical volumes without the lvm2 tools: the
// label, the metadata areas and the volume group's metadata text, parsed
// into typed values, and derives the device-mapper table lvm2 would load
// for a logical volume. The crash kernel has no lvm2, udev or lvmetad; it
// activates the logical volume under the dump target from this table.
//
// Only what a dump target needs is supported: linear and striped
// segments. Thin, RAID, mirror, cache, snapshot, VDO and integrity
// volumes are refused with ErrUnsupported rather than mapped wrongly.
//
// The formats follow lvm2's on-disk layout (lib/format_text/layout.h,
// lib/label/label.h) and its configuration syntax (libdm-config.c); no
// lvm2 code is used.
package lvm

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
)

// FormatError reports malformed LVM2 on-disk data: a label, metadata area
// or metadata text that lvm2 would not have written. Every parser of this
// package returns it (possibly wrapped) for bad input, and never panics.
type FormatError struct {
	// Part names what was read: "label", "metadata area at 4096",
	// "metadata text", "VG vg0 LV root".
	Part string
	// Msg says what is wrong with it.
	Msg string
}

func (e *FormatError) Error() string { return "lvm: malformed " + e.Part + ": " + e.Msg }

func formatErr(part, format string, args ...any) error {
	return &FormatError{Part: part, Msg: fmt.Sprintf(format, args...)}
}

// ErrUnsupported means well-formed metadata asks for something this
// package does not map (a thin or RAID LV, a snapshot origin, a pvmove in
// progress...): refusing is better than a mapping that reads or writes the
// wrong sectors.
var ErrUnsupported = errors.New("not supported")

// ErrNoLabel means the device holds no LVM2 label: it is not a PV.
var ErrNoLabel = errors.New("no LVM2 label")

// initialCRC is lvm2's INITIAL_CRC.
const initialCRC = 0xf597a6cf

// checksum is lvm2's calc_crc: the IEEE CRC-32 table without the usual
// inversion on the way in and out, which is what Go's crc32 adds.
func checksum(crc uint32, b []byte) uint32 {
	return ^crc32.Update(^crc, crc32.IEEETable, b)
}

// idLen is the length of an lvm2 id (UUID) without dashes.
const idLen = 32

// idChars are the characters lvm2 ids may contain (lib/id/id.c); new ids
// use only the alphanumeric ones.
const idChars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#"

// FormatID writes a 32-character id as lvm2 prints it: in groups of
// 6-4-4-4-4-4-6 characters separated by dashes (38 characters), the form
// of the metadata text, of pvs -o uuid and of blkid. It returns "" for a
// malformed id.
func FormatID(raw string) string {
	if !validRawID(raw) {
		return ""
	}
	var b strings.Builder
	off := 0
	for i, n := range [...]int{6, 4, 4, 4, 4, 4, 6} {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(raw[off : off+n])
		off += n
	}
	return b.String()
}

// RawID is the inverse of FormatID: the 32 characters without dashes, as
// the label and device-mapper UUIDs hold them, or "" for a malformed id.
func RawID(id string) string {
	if FormatID(strings.ReplaceAll(id, "-", "")) != id {
		return ""
	}
	return strings.ReplaceAll(id, "-", "")
}

// ValidID reports whether id is a well-formed lvm2 id in its written
// (dashed) form.
func ValidID(id string) bool { return RawID(id) != "" }

func validRawID(raw string) bool {
	if len(raw) != idLen {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if strings.IndexByte(idChars, raw[i]) < 0 {
			return false
		}
	}
	return true
}

// ValidName reports whether s is a name lvm2 accepts for a VG or an LV
// (lib/misc/lvm-string.c): letters, digits and "+_.-", not starting with
// '-', not "." or "..", at most 127 characters. Names are checked because
// they become device-mapper names and paths under /dev/mapper.
func ValidName(s string) bool {
	if s == "" || len(s) > 127 || s[0] == '-' || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+_.-", c) >= 0) {
			return false
		}
	}
	return true
}

// DMName is the device-mapper name lvm2 gives an LV (libdm's
// dm_build_dm_name): VG and LV name joined by '-', each with its own
// dashes doubled, so "my-vg"/"root" is "my--vg-root".
func DMName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// DMUUID is the device-mapper UUID lvm2 gives an LV (build_dm_uuid):
// "LVM-" and the VG and LV ids without dashes, 68 characters. Internal
// layers (-real, -cow, -tpool) add a suffix that a plain LV never has.
func DMUUID(vgID, lvID string) string {
	return "LVM-" + strings.ReplaceAll(vgID, "-", "") + strings.ReplaceAll(lvID, "-", "")
}

// ParseDMUUID splits a device-mapper UUID made by DMUUID into the VG and
// LV ids in their written form. ok is false for any other UUID, including
// the suffixed UUIDs of lvm2's internal layers.
func ParseDMUUID(u string) (vgID, lvID string, ok bool) {
	raw, found := strings.CutPrefix(u, "LVM-")
	if !found || len(raw) != 2*idLen {
		return "", "", false
	}
	vgID, lvID = FormatID(raw[:idLen]), FormatID(raw[idLen:])
	return vgID, lvID, vgID != "" && lvID != ""
}
