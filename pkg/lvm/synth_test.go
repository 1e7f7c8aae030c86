package lvm_test

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// Synthetic PVs, written here byte by byte from the on-disk layout, so the
// reader is tested without lvm2 and root, and the fuzzers have seeds.

// crcBitwise is lvm2's calc_crc written the slow way, bit by bit, to check
// the table-driven one against something independent.
func crcBitwise(crc uint32, b []byte) uint32 {
	for _, c := range b {
		crc ^= uint32(c)
		for i := 0; i < 8; i++ {
			crc = crc>>1 ^ 0xedb88320&-(crc&1)
		}
	}
	return crc
}

func lvmCRC(crc uint32, b []byte) uint32 { return ^crc32.Update(^crc, crc32.IEEETable, b) }

const synthPVID = "zzzzzzZQ3g0x2zrEW3FmlkqK7OWyNjwx"

// pvLayout says how synthPV lays out a PV.
type pvLayout struct {
	// mdaSize is the metadata area's size (default 8192), at 4096.
	mdaSize uint64
	// textOff is where the text starts in the area (default 512); the
	// text wraps when it runs past the area's end.
	textOff uint64
	// labelSector is where the label goes (default 1).
	labelSector int
	// flags are the raw_locn flags.
	flags uint32
	// second adds a second metadata area at the end, holding second.
	second []byte
	// pvid is the PV id of the label, without dashes (default synthPVID).
	pvid string
}

// synthPV makes a PV image holding text in its metadata area.
func synthPV(text []byte, o pvLayout) []byte {
	if o.mdaSize == 0 {
		o.mdaSize = 8192
	}
	if o.textOff == 0 {
		o.textOff = 512
	}
	if o.labelSector == 0 {
		o.labelSector = 1
	}
	size := 4096 + o.mdaSize
	if o.second != nil {
		size += o.mdaSize
	}
	img := make([]byte, size)
	le := binary.LittleEndian
	lab := img[o.labelSector*512 : (o.labelSector+1)*512]
	copy(lab, "LABELONE")
	le.PutUint64(lab[8:], uint64(o.labelSector))
	le.PutUint32(lab[20:], 32)
	copy(lab[24:], "LVM2 001")
	if o.pvid == "" {
		o.pvid = synthPVID
	}
	copy(lab[32:], o.pvid)
	le.PutUint64(lab[64:], size)
	// data area at 4096+mdaSize, then the terminator; metadata areas.
	le.PutUint64(lab[72:], 4096+o.mdaSize)
	p := lab[72+32:]
	le.PutUint64(p, 4096)
	le.PutUint64(p[8:], o.mdaSize)
	if o.second != nil {
		le.PutUint64(p[16:], size-o.mdaSize)
		le.PutUint64(p[24:], o.mdaSize)
	}
	le.PutUint32(lab[16:], lvmCRC(0xf597a6cf, lab[20:]))
	putMDA(img, 4096, o.mdaSize, o.textOff, o.flags, text)
	if o.second != nil {
		putMDA(img, size-o.mdaSize, o.mdaSize, 512, 0, o.second)
	}
	return img
}

// putMDA writes a metadata area at start holding text (NUL added) at off,
// wrapping to just after the header.
func putMDA(img []byte, start, size, off uint64, flags uint32, text []byte) {
	le := binary.LittleEndian
	area := img[start : start+size]
	t := append(append([]byte{}, text...), 0)
	n := copy(area[off:], t)
	copy(area[512:], t[n:])
	hdr := area[:512]
	copy(hdr[4:], " LVM2 x[5A%r0N*>")
	le.PutUint32(hdr[20:], 1)
	le.PutUint64(hdr[24:], start)
	le.PutUint64(hdr[32:], size)
	le.PutUint64(hdr[40:], off)
	le.PutUint64(hdr[48:], uint64(len(t)))
	le.PutUint32(hdr[56:], lvmCRC(lvmCRC(0xf597a6cf, t[:n]), t[n:]))
	le.PutUint32(hdr[60:], flags)
	le.PutUint32(hdr, lvmCRC(0xf597a6cf, hdr[4:]))
}

// realTexts are metadata texts lvm2 2.03.16 wrote (testdata/*.vg): two
// read back from the metadata area of PVs, one from vgcfgbackup.
func realTexts(t testing.TB) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob("testdata/*.vg")
	if err != nil || len(names) == 0 {
		t.Fatalf("no testdata/*.vg: %v", err)
	}
	texts := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		texts[filepath.Base(n)] = b
	}
	return texts
}
