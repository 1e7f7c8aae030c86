package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/lvm"
)

// LV is an LVM logical volume under the dump target.
type LV struct {
	// Mapped is the kernel name of its device-mapper device (dm-1).
	Mapped string
	// Config is what the crash kernel needs to activate it, read from the
	// metadata on its PVs: no lvm2 tool runs here either.
	Config config.LVM
}

// findLVs returns the LVM logical volumes in the stack of the target
// device, lowest first: an LV whose PV is another LV (a VG on an LV) is
// activated after that one. Each is found by its device-mapper UUID
// (LVM-<vg id><lv id>) and described from the metadata on its PVs, the
// mapping's slaves. The table derived from the metadata must be the one
// the kernel holds (live returns it), the same check as comparing with
// dmsetup table: the crash kernel derives its table the same way.
func findLVs(sys blockdev.Sys, stack []string, live func(name string) ([]dm.Target, error)) ([]LV, error) {
	var lvs []LV
	for _, mapped := range stack {
		dir := filepath.Join(sys.SysDir, "class", "block", mapped)
		b, err := os.ReadFile(filepath.Join(dir, "dm", "uuid"))
		if err != nil || !strings.HasPrefix(string(b), "LVM-") {
			continue
		}
		name, _ := os.ReadFile(filepath.Join(dir, "dm", "name"))
		who := fmt.Sprintf("%s (%s)", strings.TrimSpace(string(name)), mapped)
		vgID, lvID, ok := lvm.ParseDMUUID(strings.TrimSpace(string(b)))
		if !ok {
			return nil, fmt.Errorf("loader: %s is an internal layer of an LVM volume (device-mapper UUID %s): thin, cached, snapshot and RAID volumes cannot hold the dump target",
				who, strings.TrimSpace(string(b)))
		}
		slaves, err := os.ReadDir(filepath.Join(dir, "slaves"))
		if err != nil {
			return nil, fmt.Errorf("loader: LVM volume %s: %w", who, err)
		}
		var disks []*lvm.Disk
		devno := map[string]string{}
		for _, s := range slaves {
			d, err := readPV(filepath.Join(sys.DevDir, s.Name()))
			if errors.Is(err, lvm.ErrNoLabel) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("loader: LVM volume %s: PV %s: %w", who, s.Name(), err)
			}
			maj, min, err := sys.Number(s.Name())
			if err != nil {
				return nil, fmt.Errorf("loader: LVM volume %s: %w", who, err)
			}
			disks = append(disks, d)
			devno[d.Label.PVID] = fmt.Sprintf("%d:%d", maj, min)
		}
		if len(disks) == 0 {
			return nil, fmt.Errorf("loader: LVM volume %s lies on no PV but on other mappings: thin, cached, snapshot and RAID volumes cannot hold the dump target", who)
		}
		c, err := lvm.Record(disks, vgID, lvID)
		if err != nil {
			return nil, fmt.Errorf("loader: LVM volume %s: %w", who, err)
		}
		if err := checkLive(strings.TrimSpace(string(name)), c, devno, live); err != nil {
			return nil, fmt.Errorf("loader: LVM volume %s: %w", who, err)
		}
		lvs = append(lvs, LV{Mapped: mapped, Config: c})
	}
	slices.Reverse(lvs)
	return lvs, nil
}

// checkLive compares the table derived from the metadata with the live
// one. They differ while lvm2 is changing the LV (a pvmove, an lvextend
// between its metadata commit and the table reload), and would differ if
// this package derived tables unlike lvm2.
func checkLive(name string, c config.LVM, devno map[string]string, live func(string) ([]dm.Target, error)) error {
	got, err := live(name)
	if err != nil {
		return fmt.Errorf("reading its live table: %w", err)
	}
	var want []string
	for _, t := range lvm.FromConfig(c.Table) {
		want = append(want, t.Line(func(id string) string { return devno[id] }))
	}
	var have []string
	for _, t := range got {
		have = append(have, fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, t.Params))
	}
	if !slices.Equal(have, want) {
		return fmt.Errorf("its live table (%s) is not the one its metadata (seqno %d) describes (%s): is lvm2 changing it (pvmove, lvconvert)? Load again when it is done",
			strings.Join(have, "; "), c.Seqno, strings.Join(want, "; "))
	}
	return nil
}

func readPV(path string) (*lvm.Disk, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return lvm.ReadDisk(f)
}

// checkOrder refuses a LUKS volume on top of an LV: the crash kernel
// unlocks every LUKS volume before it activates any LV (LVM on LUKS, the
// usual layout), so the LV under such a volume would not be there yet.
func checkOrder(vols []Volume, lvs []LV) error {
	for _, v := range vols {
		for _, lv := range lvs {
			if filepath.Base(v.Backing) == lv.Mapped {
				return fmt.Errorf("loader: LUKS volume %s lies on LVM volume %s/%s: ukdump unlocks LUKS volumes before it activates LVM volumes, so LUKS on LVM is not supported (LVM on LUKS is)",
					v.Name, lv.Config.VG, lv.Config.LV)
			}
		}
	}
	return nil
}

// lvmConfigs are the LVs as config.Init takes them.
func lvmConfigs(lvs []LV) []config.LVM {
	var out []config.LVM
	for _, lv := range lvs {
		out = append(out, lv.Config)
	}
	return out
}
