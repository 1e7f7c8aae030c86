package lvm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ukdump/ukdump/pkg/lvm"
)

// exercise runs what the loader and the crash kernel do with a VG: the
// table of every LV, which must be well formed whenever it is given.
func exercise(t *testing.T, vg *lvm.VG) {
	if vg.Name == "" || !lvm.ValidID(vg.ID) || vg.ExtentSize == 0 {
		t.Fatalf("VG %+v", vg)
	}
	for i := range vg.LVs {
		lv := &vg.LVs[i]
		table, err := vg.Table(lv)
		if err != nil {
			var fe *lvm.FormatError
			if !errors.Is(err, lvm.ErrUnsupported) && !errors.As(err, &fe) && lv.Name != "" {
				// a missing PV is the one other refusal
				if !bytes.Contains([]byte(err.Error()), []byte("marked missing")) {
					t.Fatalf("Table(%s): unexpected error %v", lv.Name, err)
				}
			}
			continue
		}
		next := uint64(0)
		for _, l := range table {
			if l.Start != next || l.Length == 0 || len(l.Areas) == 0 || (len(l.Areas) > 1) != (l.ChunkSize > 0) {
				t.Fatalf("Table(%s) = %+v", lv.Name, table)
			}
			for _, a := range l.Areas {
				pv := vg.PVByID(a.PVID)
				if pv == nil || a.Offset < pv.PEStart || a.Offset+l.Length/uint64(len(l.Areas)) > pv.PEStart+pv.PECount*vg.ExtentSize {
					t.Fatalf("Table(%s) = %+v: area outside its PV %+v", lv.Name, table, pv)
				}
			}
			_ = l.Line(func(id string) string { return id })
			next += l.Length
		}
		if !lvm.Agree(table, table) {
			t.Fatal("a table disagrees with itself")
		}
	}
}

// FuzzReadDisk feeds whole PV images: label and metadata area damage,
// truncation, odd offsets and sizes. Most mutations break a checksum;
// FuzzParseVG reaches the text.
func FuzzReadDisk(f *testing.F) {
	for _, text := range realTexts(f) {
		vg, err := lvm.ParseVG(text)
		if err != nil {
			f.Fatal(err)
		}
		// Small areas keep the seeds small: the fuzzer minimizes every
		// new input it finds, which takes long for large ones.
		pvid, size := lvm.RawID(vg.PVs[0].ID), uint64(len(text)+1024)&^511
		f.Add(synthPV(text, pvLayout{pvid: pvid, mdaSize: size}))
		f.Add(synthPV(text, pvLayout{pvid: pvid, mdaSize: size, textOff: size - 100}))
	}
	f.Add(synthPV(vgText(lvText("root", rw, "5 "+linear("pv0", 0))), pvLayout{pvid: lvm.RawID(pv0ID), labelSector: 2}))
	f.Fuzz(func(t *testing.T, img []byte) {
		d, err := lvm.ReadDisk(bytes.NewReader(img))
		if err != nil {
			if d != nil {
				t.Fatal("a disk with an error")
			}
			return
		}
		if d.Label == nil || !lvm.ValidID(d.Label.PVID) {
			t.Fatalf("label %+v", d.Label)
		}
		if d.VG != nil {
			exercise(t, d.VG)
		}
	})
}

// FuzzParseVG feeds metadata texts, put into a PV's metadata area with
// good checksums and at an offset the fuzzer picks, so that every input
// reaches the parser, through the circular buffer's wrap-around.
func FuzzParseVG(f *testing.F) {
	for _, text := range realTexts(f) {
		f.Add(text, uint16(0))
		f.Add(text, uint16(7500))
	}
	f.Add(vgText(lvText("root", rw, "4 type = \"striped\"\nstripe_count = 2\nstripe_size = 128\nstripes = [\"pv0\", 10, \"pv1\", 0]")), uint16(100))
	f.Fuzz(func(t *testing.T, text []byte, off uint16) {
		const mdaSize = 16384
		if len(text) > mdaSize-1024 || bytes.IndexByte(text, 0) >= 0 {
			return
		}
		vg, err := lvm.ParseVG(text)
		if err == nil {
			exercise(t, vg)
		}
		var pvid string
		if err == nil && len(vg.PVs) > 0 {
			pvid = lvm.RawID(vg.PVs[0].ID)
		}
		img := synthPV(text, pvLayout{pvid: pvid, mdaSize: mdaSize, textOff: 512 + uint64(off)%(mdaSize-512)})
		d, derr := lvm.ReadDisk(bytes.NewReader(img))
		if pvid != "" && (derr != nil || d.VG == nil || d.VG.Seqno != vg.Seqno) {
			t.Fatalf("text parsed alone but not from the PV: %v", derr)
		}
		if derr == nil && d.VG != nil {
			exercise(t, d.VG)
			if binary.LittleEndian.Uint64(img[4096+48:]) != uint64(len(text)+1) {
				t.Fatal("synthPV lost the text")
			}
		}
	})
}
