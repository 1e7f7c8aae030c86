package lvm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/lvm"
	"github.com/ukdump/ukdump/pkg/lvm/lvmtest"
)

// Tests against PVs written by the real lvm2 tools, checked against what
// lvm2's own reports (pvs, vgs, lvs --segments) say about them.

const imageSize = 32 << 20

func num(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("lvm2 report: %q: %v", s, err)
	}
	return n
}

// readDisks reads every image of h as a PV.
func readDisks(t *testing.T, h *lvmtest.Host) []*lvm.Disk {
	t.Helper()
	var disks []*lvm.Disk
	for i := range h.Images {
		d, err := lvm.ReadDisk(bytes.NewReader(h.Image(t, i)))
		if err != nil {
			t.Fatalf("ReadDisk(%s): %v", h.Loops[i], err)
		}
		disks = append(disks, d)
	}
	return disks
}

// pvReport is what pvs says about a PV.
type pvReport struct {
	ID               string
	PEStart, DevSize uint64
}

// expected is what lvm2's reports say about a VG: the VG, its PVs and the
// table of each LV, made from lvs --segments with the formula
// pe_start + extent × extent_size.
type expected struct {
	name, id      string
	seqno, extent uint64
	pvs           map[string]pvReport // by device
	tables        map[string][]lvm.Target
	dmNames       map[string]string
	lvIDs         map[string]string
}

func report(t *testing.T, h *lvmtest.Host, vg string) expected {
	t.Helper()
	e := expected{pvs: map[string]pvReport{}, tables: map[string][]lvm.Target{}, dmNames: map[string]string{}, lvIDs: map[string]string{}}
	row := h.Report(t, "vgs", "-o", "vg_name,vg_uuid,vg_seqno,vg_extent_size", vg)[0]
	e.name, e.id, e.seqno, e.extent = row[0], row[1], num(t, row[2]), num(t, row[3])
	for _, r := range h.Report(t, "pvs", "-o", "pv_name,pv_uuid,pe_start,dev_size") {
		e.pvs[r[0]] = pvReport{ID: r[1], PEStart: num(t, r[2]), DevSize: num(t, r[3])}
	}
	for _, r := range h.Report(t, "lvs", "--segments", "-o", "lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges,stripes,stripe_size,lv_dm_path,lv_uuid", vg) {
		tg := lvm.Target{Start: num(t, r[1]) * e.extent, Length: num(t, r[2]) * e.extent}
		if num(t, r[4]) > 1 {
			tg.ChunkSize = num(t, r[5])
		}
		for _, rng := range strings.Fields(r[3]) {
			dev, ext, _ := strings.Cut(rng, ":")
			first, _, _ := strings.Cut(ext, "-")
			pv := e.pvs[dev]
			tg.Areas = append(tg.Areas, lvm.PVArea{PVID: pv.ID, Offset: pv.PEStart + num(t, first)*e.extent})
		}
		e.tables[r[0]] = append(e.tables[r[0]], tg)
		e.dmNames[r[0]] = strings.TrimPrefix(r[6], "/dev/mapper/")
		e.lvIDs[r[0]] = r[7]
	}
	return e
}

// check compares what this package reads from the images of h with what
// lvm2 reports: the labels, the VG, and the tables of the LVs lvs shows
// (or of those named).
func check(t *testing.T, h *lvmtest.Host, vgName string, only ...string) *lvm.VG {
	t.Helper()
	e := report(t, h, vgName)
	disks := readDisks(t, h)
	for i, d := range disks {
		pv := e.pvs[h.Loops[i]]
		if d.Label.PVID != pv.ID || d.Label.DevSize != pv.DevSize*512 || len(d.Passed) != 0 {
			t.Errorf("%s: label %+v, passed %v; lvm2 says %+v", h.Loops[i], d.Label, d.Passed, pv)
		}
	}
	vg, err := lvm.Newest(disks, e.id)
	if err != nil {
		t.Fatal(err)
	}
	if vg.Name != e.name || vg.Seqno != e.seqno || vg.ExtentSize != e.extent {
		t.Errorf("VG %s id %s seqno %d extent %d; lvm2 says %+v", vg.Name, vg.ID, vg.Seqno, vg.ExtentSize, e)
	}
	for name, want := range e.tables {
		lv := vg.LVByName(name)
		if lv == nil || lv.ID != e.lvIDs[name] {
			t.Errorf("LV %s: %+v, lvm2 says id %s", name, lv, e.lvIDs[name])
			continue
		}
		if len(only) > 0 && !slices.Contains(only, name) {
			continue
		}
		got, err := vg.Table(lv)
		if err != nil {
			t.Errorf("Table(%s): %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Table(%s) =\n%+v\nlvs --segments gives\n%+v", name, got, want)
		}
		if dn := lvm.DMName(vg.Name, name); dn != e.dmNames[name] {
			t.Errorf("DMName(%s, %s) = %s, lvm2's lv_dm_path names %s", vg.Name, name, dn, e.dmNames[name])
		}
	}
	return vg
}

// TestRealLayouts: LVs made by lvm2, their tables compared with lvs and
// with the formula worked out by hand (4 MiB extents after 1 MiB): one
// PV; root extended after swap_1 took the extents after it (two
// segments, one table with two lines); an LV striped over two PVs next to
// a linear one, with dashes in the names. $N is the N-th PV.
func TestRealLayouts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pvs      int
		vg       string
		commands [][]string
		lv       string
		lines    string
	}{
		{"linear", 1, "vg0", [][]string{
			{"vgcreate", "vg0", "$0"},
			{"lvcreate", "-an", "-Zn", "-n", "root", "-L", "20M", "vg0"},
			{"lvcreate", "-an", "-Zn", "-n", "swap_1", "-L", "8M", "vg0"},
		}, "swap_1", "0 16384 linear $0 43008"},
		{"two segments", 1, "vg0", [][]string{
			{"vgcreate", "vg0", "$0"},
			{"lvcreate", "-an", "-Zn", "-n", "root", "-L", "8M", "vg0"},
			{"lvcreate", "-an", "-Zn", "-n", "swap_1", "-L", "4M", "vg0"},
			{"lvextend", "-L", "+8M", "vg0/root"},
		}, "root", "0 16384 linear $0 2048\n16384 16384 linear $0 26624"},
		{"striped, dashes", 2, "my-vg", [][]string{
			{"vgcreate", "my-vg", "$0", "$1"},
			{"lvcreate", "-an", "-Zn", "-i", "2", "-I", "64k", "-n", "my-lv", "-L", "16M", "my-vg"},
			{"lvcreate", "-an", "-Zn", "-n", "tail", "-L", "4M", "my-vg", "$1"},
		}, "my-lv", "0 32768 striped 2 128 $0 2048 $1 2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := lvmtest.New(t, tc.pvs, imageSize)
			for _, c := range tc.commands {
				args := slices.Clone(c[1:])
				for i, a := range args {
					if n, ok := strings.CutPrefix(a, "$"); ok {
						args[i] = h.Loops[num(t, n)]
					}
				}
				h.LVM(t, c[0], args...)
			}
			vg := check(t, h, tc.vg)
			name := map[string]string{}
			for i, d := range readDisks(t, h) {
				name[d.Label.PVID] = "$" + strconv.Itoa(i)
			}
			lv := vg.LVByName(tc.lv)
			table, err := vg.Table(lv)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, l := range table {
				lines = append(lines, l.Line(func(id string) string { return name[id] }))
			}
			if got := strings.Join(lines, "\n"); got != tc.lines {
				t.Errorf("%s:\n%s\nwant\n%s", tc.lv, got, tc.lines)
			}
			if got := lvm.DMUUID(vg.ID, lv.ID); got != "LVM-"+strings.ReplaceAll(vg.ID+lv.ID, "-", "") || len(got) != 68 {
				t.Errorf("DMUUID = %s", got)
			}
		})
	}
}

// TestRealSnapshot: neither the origin of a snapshot nor the snapshot
// may be mapped as a plain table. lvm2 cannot make a snapshot without
// device-mapper, so the snapshot is added to the metadata by hand and
// written with vgcfgrestore, which checks it; lvs then shows it as one.
func TestRealSnapshot(t *testing.T) {
	h := lvmtest.New(t, 1, imageSize)
	h.LVM(t, "vgcreate", "vg0", h.Loops[0])
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "root", "-L", "8M", "vg0")
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "snap", "-L", "4M", "vg0")
	text := h.Backup(t, "vg0")
	end := strings.LastIndex(text, "\t}\n\n}")
	if end < 0 {
		t.Fatalf("no end of logical_volumes in\n%s", text)
	}
	text = text[:end] + snapshotLV + text[end:]
	h.Restore(t, "vg0", text)
	if attr := h.Report(t, "lvs", "-o", "lv_attr,origin", "vg0/snap")[0]; attr[0][0] != 's' || attr[1] != "root" {
		t.Fatalf("lvs sees no snapshot of root: %v", attr)
	}
	vg := check(t, h, "vg0", "none")
	for lv, want := range map[string]string{
		"root":      "the origin of snapshot snap",
		"snap":      "a snapshot of root",
		"snapshot0": "an internal LV",
	} {
		_, err := vg.Table(vg.LVByName(lv))
		if !errors.Is(err, lvm.ErrUnsupported) || !strings.Contains(err.Error(), want) {
			t.Errorf("Table(%s) = %v, want %q", lv, err, want)
		}
	}
}

// snapshotLV is the hidden LV lvm2 writes for a snapshot: snap holds the
// copy-on-write store of root.
const snapshotLV = `
		snapshot0 {
			id = "abcdef-ABCD-0123-4567-89ab-cdef-ghijkl"
			status = ["READ", "WRITE"]
			flags = []
			segment_count = 1

			segment1 {
				start_extent = 0
				extent_count = 2
				type = "snapshot"
				chunk_size = 8
				origin = "root"
				cow_store = "snap"
			}
		}
`

// mdaText returns where the committed text of the first metadata area
// of a PV image lies: offset and size within the area, and the area's.
func mdaText(t *testing.T, img []byte) (area, off, size, areaSize uint64) {
	t.Helper()
	l, err := lvm.ReadLabel(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	a := l.MetadataAreas[0]
	hdr := img[a.Offset:]
	return a.Offset, binary.LittleEndian.Uint64(hdr[40:]), binary.LittleEndian.Uint64(hdr[48:]), binary.LittleEndian.Uint64(hdr[32:])
}

// TestRealWrap: after many updates in a small metadata area the text
// wraps past its end; the copy read back is the newest, whole.
func TestRealWrap(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lvm2 100 times")
	}
	h := lvmtest.New(t, 1, imageSize)
	h.LVM(t, "pvcreate", "--dataalignment", "64k", "--metadatasize", "32k", h.Loops[0])
	h.LVM(t, "vgcreate", "-s", "1m", "vg0", h.Loops[0])
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "root", "-L", "4M", "vg0")
	// Each copy starts after the last one, on the next 512-byte boundary,
	// or at the start when that is within 512 bytes of the end; it wraps
	// when it starts closer to the end than its length. Ten more LVs make
	// 4-5 KiB copies, which wrap on most passes through the 60 KiB area.
	for i := 0; i < 10; i++ {
		h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "lv"+strconv.Itoa(i), "-L", "1M", "vg0")
	}
	wrapped := 0
	for i := 0; i < 50; i++ {
		for _, c := range [][]string{{"lvcreate", "-an", "-Zn", "-n", "tmp", "-L", "1M", "vg0"}, {"lvremove", "-y", "vg0/tmp"}} {
			h.LVM(t, c[0], c[1:]...)
			_, off, size, areaSize := mdaText(t, h.Image(t, 0))
			if off+size > areaSize {
				wrapped++
				check(t, h, "vg0")
			}
		}
	}
	if wrapped < 2 {
		t.Fatalf("the metadata wrapped around the end of the area %d times in 100 writes", wrapped)
	}
	t.Logf("%d of 100 copies wrapped around the end of the area", wrapped)
	check(t, h, "vg0")
}

// TestRealDamage: a damaged label or metadata text is refused with a
// FormatError naming what is damaged; with two metadata copies the good
// one is used and the damaged one reported.
func TestRealDamage(t *testing.T) {
	h := lvmtest.New(t, 1, imageSize)
	h.LVM(t, "pvcreate", "--pvmetadatacopies", "2", h.Loops[0])
	h.LVM(t, "vgcreate", "vg0", h.Loops[0])
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "root", "-L", "8M", "vg0")
	img := h.Image(t, 0)
	area, off, _, _ := mdaText(t, img)

	flip := func(at uint64) []byte {
		b := bytes.Clone(img)
		b[at] ^= 0x20
		return b
	}
	_, err := lvm.ReadDisk(bytes.NewReader(flip(512 + 100)))
	var fe *lvm.FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "label at sector 1: checksum") {
		t.Errorf("damaged label: %v", err)
	}
	d, err := lvm.ReadDisk(bytes.NewReader(flip(area + off + 10)))
	if err != nil || d.VG == nil || len(d.Passed) != 1 || !strings.Contains(d.Passed[0].Error(), "text checksum") {
		t.Errorf("one damaged copy of two: %+v, %v", d, err)
	}
	l, _ := lvm.ReadLabel(bytes.NewReader(img))
	second := l.MetadataAreas[1]
	both := flip(area + off + 10)
	both[second.Offset+mdaTextOffset(img, second.Offset)+10] ^= 0x20
	if _, err := lvm.ReadDisk(bytes.NewReader(both)); !errors.As(err, &fe) || !strings.Contains(err.Error(), "no good metadata copy") {
		t.Errorf("both copies damaged: %v", err)
	}
}

func mdaTextOffset(img []byte, area uint64) uint64 {
	return binary.LittleEndian.Uint64(img[area+40:])
}

// TestRealActivateAfterChange: "ukdump load" records root; then lvm2
// makes another LV and extends root past it (a second segment). The crash
// kernel activates root as it is now, with the table lvs describes.
func TestRealActivateAfterChange(t *testing.T) {
	h := lvmtest.New(t, 2, imageSize)
	h.LVM(t, "vgcreate", "vg0", h.Loops[0], h.Loops[1])
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "root", "-L", "8M", "vg0", h.Loops[0])
	vg := check(t, h, "vg0")
	rec, err := lvm.Record(readDisks(t, h), vg.ID, vg.LVByName("root").ID)
	if err != nil {
		t.Fatal(err)
	}
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "swap_1", "-L", "4M", "vg0", h.Loops[0])
	h.LVM(t, "lvextend", "-L", "+8M", "vg0/root", h.Loops[0])
	want := report(t, h, "vg0").tables["root"]

	s := newCrashSys(t)
	devno := map[string]string{}
	for i, d := range readDisks(t, h) {
		n := "vd" + string(rune('a'+i))
		devno[d.Label.PVID] = "254:" + strconv.Itoa(16*i)
		s.add(t, n, devno[d.Label.PVID], strconv.Itoa(imageSize/512), h.Image(t, i))
	}
	r, _, log, err := activate(t, s, rec, 2*time.Second)
	if err != nil {
		t.Fatalf("Activate: %v\n%s", err, log)
	}
	var got, lines []string
	for _, tg := range r.tables[0].Targets {
		got = append(got, fmt.Sprintf("%d %d %s %s", tg.Start, tg.Length, tg.Type, tg.Params))
	}
	for _, tg := range want {
		lines = append(lines, tg.Line(func(id string) string { return devno[id] }))
	}
	if strings.Join(got, "\n") != strings.Join(lines, "\n") || len(lines) != 2 {
		t.Errorf("activated\n%s\nlvs says\n%s", strings.Join(got, "\n"), strings.Join(lines, "\n"))
	}
	if !strings.Contains(log, "resized since") {
		t.Errorf("log:\n%s", log)
	}
}
