package lvm

import (
	"fmt"

	"github.com/ukdump/ukdump/pkg/config"
)

// Record describes an LV for the crash kernel (config.Init), from the
// disks of the PVs under its mapping in the first kernel: names, ids, the
// metadata's seqno, the PVs its table uses and the table.
func Record(disks []*Disk, vgID, lvID string) (config.LVM, error) {
	vg, err := Newest(disks, vgID)
	if err != nil {
		return config.LVM{}, fmt.Errorf("lvm: VG %s: %w", vgID, err)
	}
	lv := vg.LVByID(lvID)
	if lv == nil {
		return config.LVM{}, fmt.Errorf("lvm: VG %s (seqno %d) has no LV with id %s", vg.Name, vg.Seqno, lvID)
	}
	table, err := vg.Table(lv)
	if err != nil {
		return config.LVM{}, err
	}
	have := map[string]bool{}
	for _, d := range disks {
		have[d.Label.PVID] = true
	}
	pvs := PVIDs(table)
	for _, id := range pvs {
		if !have[id] {
			return config.LVM{}, fmt.Errorf("lvm: %s/%s lies on PV %s, which is not under its mapping: the metadata and the live mapping differ", vg.Name, lv.Name, id)
		}
	}
	return config.LVM{VG: vg.Name, VGID: vg.ID, LV: lv.Name, LVID: lv.ID, PVs: pvs, Seqno: vg.Seqno, Table: ToConfig(table)}, nil
}

// ToConfig is the table as config.LVM records it.
func ToConfig(table []Target) []config.LVMTarget {
	out := make([]config.LVMTarget, 0, len(table))
	for _, t := range table {
		c := config.LVMTarget{Start: t.Start, Length: t.Length, ChunkSize: t.ChunkSize}
		for _, a := range t.Areas {
			c.Areas = append(c.Areas, config.LVMArea{PV: a.PVID, Offset: a.Offset})
		}
		out = append(out, c)
	}
	return out
}

// FromConfig is the inverse of ToConfig.
func FromConfig(table []config.LVMTarget) []Target {
	out := make([]Target, 0, len(table))
	for _, c := range table {
		t := Target{Start: c.Start, Length: c.Length, ChunkSize: c.ChunkSize}
		for _, a := range c.Areas {
			t.Areas = append(t.Areas, PVArea{PVID: a.PV, Offset: a.Offset})
		}
		out = append(out, t)
	}
	return out
}
