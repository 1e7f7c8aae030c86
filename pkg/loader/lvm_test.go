package loader

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
	"github.com/ukdump/ukdump/pkg/lvm"
	"github.com/ukdump/ukdump/pkg/lvm/lvmtest"
)

// The target's filesystem on the LV, with its own UUID.
const lvFSUUID = "0badc0de-0000-4000-8000-00000000cafe"

var lvFSRaw = [16]byte{0x0b, 0xad, 0xc0, 0xde, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0xca, 0xfe}

// lvmPV makes a PV with lvm2: VG vg0 with swap_1 and root, and returns
// the image and what lvm2 says of root.
func lvmPV(t *testing.T) (img string, vgID, lvID string) {
	h := lvmtest.New(t, 1, 32<<20)
	h.LVM(t, "vgcreate", "vg0", h.Loops[0])
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "swap_1", "-L", "4M", "vg0")
	h.LVM(t, "lvcreate", "-an", "-Zn", "-n", "root", "-L", "8M", "vg0")
	r := h.Report(t, "lvs", "-o", "vg_uuid,lv_uuid", "vg0/root")[0]
	return h.Images[0], r[0], r[1]
}

// liveTables is a kernel holding these tables, one line each, as
// dmsetup table prints them.
func liveTables(tables map[string]string) func(string) ([]dm.Target, error) {
	return func(name string) ([]dm.Target, error) {
		line, ok := tables[name]
		if !ok {
			return nil, fmt.Errorf("no mapping %s", name)
		}
		var t dm.Target
		f := strings.SplitN(line, " ", 4)
		fmt.Sscan(f[0], &t.Start)
		fmt.Sscan(f[1], &t.Length)
		t.Type, t.Params = f[2], f[3]
		return []dm.Target{t}, nil
	}
}

// lvmSystem is a fake system whose vdb is the PV of lvmPV, with root
// mapped as dm-0.
func lvmSystem(t *testing.T) (s loadertest.System, img, vgID, lvID string) {
	img, vgID, lvID = lvmPV(t)
	s = loadertest.New(t, "ext4 UUID="+lvFSUUID+"\n")
	s.Disk(t, "vdb", "253:16", 5)
	s.LinkNode(t, "vdb", img)
	s.Mapping(t, "dm-0", "254:0", "vg0-root", lvm.DMUUID(vgID, lvID), "vdb")
	return s, img, vgID, lvID
}

// TestPrepareLVM: ext4 on LV vg0/root on PV vdb, plain LVM. The plan
// activates root from the metadata lvm2 wrote, with dm_mod.
func TestPrepareLVM(t *testing.T) {
	s, _, vgID, lvID := lvmSystem(t)
	loadertest.Write(t, filepath.Join(s.Sys.DevDir, "dm-0"), string(loadertest.Ext4(lvFSRaw)))
	o := options(s)
	o.LiveTable = liveTables(map[string]string{"vg0-root": "0 16384 linear 253:16 10240"})
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Build.Config
	if len(c.LVM) != 1 || len(c.Volumes) != 0 {
		t.Fatalf("LVM %+v, volumes %+v", c.LVM, c.Volumes)
	}
	l := c.LVM[0]
	// root starts at extent 1 (after swap_1), 4 MiB extents after 1 MiB.
	if l.VG != "vg0" || l.LV != "root" || l.VGID != vgID || l.LVID != lvID || len(l.PVs) != 1 || l.Seqno != 3 ||
		len(l.Table) != 1 || l.Table[0].Length != 16384 || l.Table[0].Areas[0].Offset != 2048+8192 || l.Table[0].Areas[0].PV != l.PVs[0] {
		t.Errorf("LVM config %+v", l)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	if !slices.Contains(p.Build.Modules, "dm_mod") || slices.Contains(p.Build.Modules, "dm_crypt") {
		t.Errorf("modules %v", p.Build.Modules)
	}
	if p.Target.Device.Name != "dm-0" {
		t.Errorf("target on %+v", p.Target.Device)
	}
}

// TestPrepareLVMOnLUKS: Debian's guided encrypted LVM: ext4 on vg0/root,
// whose PV is the LUKS2 mapping vdb_crypt on vdb. The LUKS volume comes
// first, then the LV.
func TestPrepareLVMOnLUKS(t *testing.T) {
	img, vgID, lvID := lvmPV(t)
	s := loadertest.New(t, "ext4 UUID="+lvFSUUID+"\n")
	s.Disk(t, "vdb", "253:16", 5)
	_, h := lukstest.Format(t, filepath.Join(s.Sys.DevDir, "vdb"), 20<<20, lukstest.Options{})
	s.Mapping(t, "dm-0", "254:0", "vdb_crypt", "CRYPT-LUKS2-"+strings.ReplaceAll(h.UUID, "-", "")+"-vdb_crypt", "vdb")
	s.LinkNode(t, "dm-0", img) // what the mapping shows: the PV
	s.Mapping(t, "dm-1", "254:1", "vg0-root", lvm.DMUUID(vgID, lvID), "dm-0")
	loadertest.Write(t, filepath.Join(s.Sys.DevDir, "dm-1"), string(loadertest.Ext4(lvFSRaw)))
	o := options(s)
	o.LiveTable = liveTables(map[string]string{"vg0-root": "0 16384 linear 254:0 10240"})
	p, err := Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Build.Config
	if len(p.Volumes) != 1 || p.Volumes[0].Name != "vdb_crypt" || len(c.LVM) != 1 || c.LVM[0].LVID != lvID || p.LVs[0].Mapped != "dm-1" {
		t.Errorf("volumes %+v, LVM %+v", p.Volumes, c.LVM)
	}
	if !slices.Contains(p.Build.Modules, "dm_mod") || !slices.Contains(p.Build.Modules, "dm_crypt") {
		t.Errorf("modules %v", p.Build.Modules)
	}
}

// TestPrepareLUKSOnLVM: a LUKS volume on an LV would need the LV before
// the LUKS volume, the other way round from what the crash kernel does.
func TestPrepareLUKSOnLVM(t *testing.T) {
	s, _, _, _ := lvmSystem(t)
	_, h := lukstest.Format(t, filepath.Join(s.Sys.DevDir, "dm-0"), 20<<20, lukstest.Options{})
	s.Mapping(t, "dm-1", "254:1", "root_crypt", "CRYPT-LUKS2-"+strings.ReplaceAll(h.UUID, "-", "")+"-root_crypt", "dm-0")
	loadertest.Write(t, filepath.Join(s.Sys.DevDir, "dm-1"), string(loadertest.Ext4(lvFSRaw)))
	o := options(s)
	o.LiveTable = liveTables(map[string]string{"vg0-root": "0 16384 linear 253:16 10240"})
	if _, err := Prepare(o); err == nil || !strings.Contains(err.Error(), "LUKS volume root_crypt lies on LVM volume vg0/root") {
		t.Errorf("Prepare = %v", err)
	}
}

// TestFindLVsRefused: layered LVs (here a thin volume on its pool's
// mapping) and PVs that no longer hold the LV are refused by name.
func TestFindLVsRefused(t *testing.T) {
	s, img, vgID, lvID := lvmSystem(t)
	live := liveTables(map[string]string{"vg0-root": "0 16384 linear 253:16 10240"})
	if _, err := findLVs(s.Sys, []string{"dm-0", "vdb"}, live); err != nil {
		t.Fatal(err)
	}
	// lvm2 in the middle of a change: the kernel maps another place.
	moved := liveTables(map[string]string{"vg0-root": "0 16384 linear 253:16 2048"})
	if _, err := findLVs(s.Sys, []string{"dm-0", "vdb"}, moved); err == nil ||
		!strings.Contains(err.Error(), "live table (0 16384 linear 253:16 2048) is not the one its metadata (seqno 3) describes (0 16384 linear 253:16 10240)") {
		t.Errorf("live table differs: %v", err)
	}
	if _, err := findLVs(s.Sys, []string{"dm-0", "vdb"}, liveTables(nil)); err == nil || !strings.Contains(err.Error(), "reading its live table: no mapping vg0-root") {
		t.Errorf("no live table: %v", err)
	}
	s.Mapping(t, "dm-4", "254:4", "vg0-pool-tpool", lvm.DMUUID(vgID, lvID)+"-tpool", "vdb")
	loadertest.Write(t, filepath.Join(s.Sys.DevDir, "dm-4"), string(make([]byte, 4096)))
	s.Mapping(t, "dm-1", "254:1", "vg0-thin", lvm.DMUUID(vgID, "JpVgSQ-AswF-sbxi-VYe3-sDrm-GKxX-xUcuBX"), "dm-4")
	if _, err := findLVs(s.Sys, []string{"dm-1", "dm-4", "vdb"}, live); err == nil || !strings.Contains(err.Error(), "vg0-thin (dm-1) lies on no PV") {
		t.Errorf("thin: %v", err)
	}
	if _, err := findLVs(s.Sys, []string{"dm-4", "vdb"}, live); err == nil || !strings.Contains(err.Error(), "internal layer") {
		t.Errorf("layer: %v", err)
	}
	s.Mapping(t, "dm-2", "254:2", "vg0-gone", lvm.DMUUID(vgID, "JpVgSQ-AswF-sbxi-VYe3-sDrm-GKxX-xUcuBX"), "vdb")
	if _, err := findLVs(s.Sys, []string{"dm-2", "vdb"}, live); err == nil || !strings.Contains(err.Error(), "has no LV with id JpVgSQ") {
		t.Errorf("LV not in the metadata: %v", err)
	}
	// A damaged PV names the device.
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Clone(b[:2<<20])
	b[512+100] ^= 1
	loadertest.Write(t, filepath.Join(s.Sys.DevDir, "vdc"), string(b))
	s.Disk(t, "vdc", "253:32", 6)
	s.Mapping(t, "dm-3", "254:3", "vg0-root", lvm.DMUUID(vgID, lvID), "vdc")
	if _, err := findLVs(s.Sys, []string{"dm-3", "vdc"}, live); err == nil || !strings.Contains(err.Error(), "vg0-root (dm-3): PV vdc: lvm: malformed label at sector 1: checksum") {
		t.Errorf("damaged PV: %v", err)
	}
}
