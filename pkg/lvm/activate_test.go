package lvm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/lvm"
)

// crashSys is a crash kernel's block devices: each name holds an image,
// with a device number and a size (sectors) in sysfs.
type crashSys struct {
	sys blockdev.Sys
}

func newCrashSys(t *testing.T) crashSys {
	root := t.TempDir()
	s := crashSys{blockdev.Sys{SysDir: filepath.Join(root, "sys"), DevDir: filepath.Join(root, "dev")}}
	if err := os.MkdirAll(s.sys.DevDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s crashSys) add(t *testing.T, name, devno string, sectors string, img []byte) {
	t.Helper()
	dir := filepath.Join(s.sys.SysDir, "class", "block", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, c := range map[string]string{"dev": devno + "\n", "size": sectors + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.sys.DevDir, name), img, 0o644); err != nil {
		t.Fatal(err)
	}
}

// recorder is a device-mapper that records the tables it is given.
type recorder struct {
	tables []dm.Table
}

func (r *recorder) create(t dm.Table) (string, error) {
	r.tables = append(r.tables, t)
	return "/dev/mapper/" + t.Name, nil
}

// pvImage is PV pv (0 or 1) of vgText holding the given LVs.
func pvImage(pv int, lvs string) []byte {
	id := []string{pv0ID, pv1ID}[pv]
	return synthPV(vgText(lvs), pvLayout{pvid: lvm.RawID(id)})
}

// recordLV is what "ukdump load" records for root in the VG made of these
// PV images.
func recordLV(t *testing.T, imgs ...[]byte) config.LVM {
	t.Helper()
	var disks []*lvm.Disk
	for _, img := range imgs {
		d, err := lvm.ReadDisk(bytes.NewReader(img))
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, d)
	}
	rec, err := lvm.Record(disks, vgID, lvID)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Validate(); err != nil {
		t.Fatal(err)
	}
	return rec
}

func activate(t *testing.T, s crashSys, v config.LVM, wait time.Duration) (*recorder, string, string, error) {
	var log bytes.Buffer
	r := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	name, err := lvm.Activate(ctx, v, lvm.Env{Log: kmsg.New(&log, nil, "test"), Sys: s.sys, Create: r.create})
	return r, name, log.String(), err
}

const striped = "4 type = \"striped\"\nstripe_count = 2\nstripe_size = 128\nstripes = [\"pv0\", 10, \"pv1\", 0]"

func TestActivate(t *testing.T) {
	lvs := lvText("root", rw, "5 "+linear("pv0", 0), striped)
	pv0, pv1 := pvImage(0, lvs), pvImage(1, lvs)
	rec := recordLV(t, pv0, pv1)
	if rec.VG != "vg0" || rec.LV != "root" || rec.Seqno != 7 || len(rec.PVs) != 2 || len(rec.Table) != 2 {
		t.Fatalf("Record = %+v", rec)
	}
	s := newCrashSys(t)
	s.add(t, "vda", "254:0", "209715200", pv0)
	s.add(t, "sdb", "8:16", "65536", pv1)
	r, name, log, err := activate(t, s, rec, time.Second)
	if err != nil {
		t.Fatalf("Activate: %v\n%s", err, log)
	}
	want := dm.Table{Name: "vg0-root", UUID: lvm.DMUUID(vgID, lvID), Targets: []dm.Target{
		{Start: 0, Length: 40960, Type: "linear", Params: "254:0 2048"},
		{Start: 40960, Length: 32768, Type: "striped", Params: "2 128 254:0 83968 8:16 2048"},
	}}
	if name != "vg0-root" || len(r.tables) != 1 || r.tables[0].Name != want.Name || r.tables[0].UUID != want.UUID ||
		len(r.tables[0].Targets) != 2 || r.tables[0].Targets[0] != want.Targets[0] || r.tables[0].Targets[1] != want.Targets[1] {
		t.Errorf("Activate made %+v, want %+v", r.tables, want)
	}
	if !strings.Contains(log, "activated LVM vg0/root (2 table lines on 2 PVs, metadata seqno 7) as /dev/mapper/vg0-root") {
		t.Errorf("log:\n%s", log)
	}
}

// TestActivateChanged: a VG changed after "ukdump load" is activated when
// the LV's table agrees with the recorded one where both map (another LV
// made, the LV extended), and refused when the LV moved.
func TestActivateChanged(t *testing.T) {
	rec := recordLV(t, pvImage(0, lvText("root", rw, "5 "+linear("pv0", 0))))
	for _, tc := range []struct {
		name, lvs, want string
		ok              bool
	}{
		{"another LV", lvText("root", rw, "5 "+linear("pv0", 0)) + strings.Replace(lvText("swap", rw, "2 "+linear("pv0", 5)), lvID, "JpVgSQ-AswF-sbxi-VYe3-sDrm-GKxX-xUcuBX", 1),
			"metadata changed since \"ukdump load\" (seqno 7, now 8)", true},
		{"extended", lvText("root", rw, "5 "+linear("pv0", 0), "2 "+linear("pv0", 9)), "resized since \"ukdump load\" (40960 sectors, now 57344)", true},
		{"moved", lvText("root", rw, "5 "+linear("pv0", 100)), "table changed since \"ukdump load\" (seqno 7, now 8", false},
		{"onto another PV", lvText("root", rw, "5 "+linear("pv0", 0), "2 "+linear("pv1", 0)), "also lies on PV " + pv1ID, false},
		{"renamed", lvText("home", rw, "5 "+linear("pv0", 0)), "renamed since \"ukdump load\": activating it as vg0/home", true},
		{"removed", strings.Replace(lvText("root", rw, "5 "+linear("pv0", 0)), lvID, "JpVgSQ-AswF-sbxi-VYe3-sDrm-GKxX-xUcuBX", 1), "has no LV with id " + lvID, false},
		{"made a snapshot", lvText("root", rw, "5 "+linear("pv0", 0)) + strings.Replace(lvText("snapshot0", `"READ"`, "5 type = \"snapshot\"\nchunk_size = 8\norigin = \"root\"\ncow_store = \"x\""), lvID, "JpVgSQ-AswF-sbxi-VYe3-sDrm-GKxX-xUcuBX", 1),
			"the origin of snapshot x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := bytes.Replace(vgText(tc.lvs), []byte("seqno = 7"), []byte("seqno = 8"), 1)
			s := newCrashSys(t)
			s.add(t, "vda", "254:0", "209715200", synthPV(text, pvLayout{pvid: lvm.RawID(pv0ID)}))
			r, _, log, err := activate(t, s, rec, time.Second)
			if tc.ok != (err == nil) || !strings.Contains(log+"\n"+errString(err), tc.want) || tc.ok != (len(r.tables) == 1) {
				t.Errorf("Activate: %v\n%s\nwant %q", err, log, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestActivateFailures(t *testing.T) {
	lvs := lvText("root", rw, "5 "+linear("pv0", 0))
	pv0 := pvImage(0, lvs)
	rec := recordLV(t, pv0)

	s := newCrashSys(t)
	s.add(t, "vda", "254:0", "209715200", make([]byte, 4096))
	_, _, _, err := activate(t, s, rec, 300*time.Millisecond)
	if !errors.Is(err, blockdev.ErrNotFound) || !strings.Contains(err.Error(), "lvm: vg0/root: waiting for PV "+pv0ID) {
		t.Errorf("no PV: %v", err)
	}

	s = newCrashSys(t)
	s.add(t, "vda", "254:0", "40000", pv0)
	if _, _, _, err := activate(t, s, rec, time.Second); err == nil || !strings.Contains(err.Error(), "has 40000 sectors, the LV needs 43008") {
		t.Errorf("short PV: %v", err)
	}

	other := bytes.Replace(vgText(lvs), []byte(vgID), []byte("zzzzzz-IZJ4-0URS-qsrS-Rfa8-m5GM-n4jZ3R"), 1)
	s = newCrashSys(t)
	s.add(t, "vda", "254:0", "209715200", synthPV(other, pvLayout{pvid: lvm.RawID(pv0ID)}))
	if _, _, _, err := activate(t, s, rec, time.Second); err == nil || !strings.Contains(err.Error(), "belongs to VG vg0 (zzzzzz-") {
		t.Errorf("PV reused by another VG: %v", err)
	}

	s = newCrashSys(t)
	s.add(t, "vda", "254:0", "209715200", pv0)
	var log bytes.Buffer
	ctx := context.Background()
	_, err = lvm.Activate(ctx, rec, lvm.Env{Log: kmsg.New(&log, nil, "test"), Sys: s.sys, Create: func(dm.Table) (string, error) {
		return "", errors.New("no device-mapper")
	}})
	if err == nil || !strings.Contains(err.Error(), "lvm: vg0/root: activating: no device-mapper") {
		t.Errorf("failed create: %v", err)
	}
}
