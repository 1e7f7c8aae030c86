package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/dm"
	"github.com/ukdump/ukdump/pkg/kmsg"
)

// Env is what activation touches of the crash kernel's system.
type Env struct {
	Log *kmsg.Logger
	Sys blockdev.Sys
	// Create makes a device-mapper mapping (dm.Create).
	Create func(dm.Table) (string, error)
}

// pollEvery is how often the block devices are probed while waiting for
// a PV: without udev there is no event to wait for.
const pollEvery = 200 * time.Millisecond

// Activate maps the LV v in the crash kernel as lvm2 would: it waits for
// each of its PVs (by PV id, until ctx ends), reads the VG metadata on
// them, derives the LV's table and creates the mapping <vg>-<lv>. The
// metadata may have changed since "ukdump load" (another LV made or
// extended); the mapping is made only if its table agrees with the one
// recorded then wherever both map, so that what the filesystem held at
// load time is read and written where it was. It returns the mapping's
// name.
func Activate(ctx context.Context, v config.LVM, env Env) (string, error) {
	who := v.VG + "/" + v.LV
	fail := func(step string, err error) (string, error) {
		return "", fmt.Errorf("lvm: %s: %s: %w", who, step, err)
	}
	devs := map[string]blockdev.Device{}
	var disks []*Disk
	for _, id := range v.PVs {
		env.Log.Printf("waiting for PV %s of LVM %s", id, who)
		dev, _, err := env.Sys.Wait(ctx, isPV(id), pollEvery)
		if err != nil {
			return fail("waiting for PV "+id, err)
		}
		d, err := readDiskFile(dev.Path)
		if err != nil {
			return fail("reading PV "+id+" on "+dev.Path, err)
		}
		for _, p := range d.Passed {
			env.Log.Printf("warning: %s: %v", dev.Path, p)
		}
		devs[id], disks = dev, append(disks, d)
	}
	vg, err := Newest(disks, v.VGID)
	if err != nil {
		return fail("reading the VG metadata", err)
	}
	lv := vg.LVByID(v.LVID)
	if lv == nil {
		return fail("finding the LV", fmt.Errorf("VG %s (seqno %d) has no LV with id %s now: was it removed after \"ukdump load\"?", vg.Name, vg.Seqno, v.LVID))
	}
	if vg.Name != v.VG || lv.Name != v.LV {
		env.Log.Printf("LVM %s was renamed since \"ukdump load\": activating it as %s/%s", who, vg.Name, lv.Name)
	}
	table, err := vg.Table(lv)
	if err != nil {
		return fail("deriving its table", err)
	}
	if err := compare(env.Log, vg, v, table); err != nil {
		return fail("checking the metadata against \"ukdump load\"", err)
	}
	targets, err := dmTargets(env.Sys, table, devs)
	if err != nil {
		return fail("placing its table", err)
	}
	name := DMName(vg.Name, lv.Name)
	node, err := env.Create(dm.Table{Name: name, UUID: DMUUID(vg.ID, lv.ID), Targets: targets})
	if err != nil {
		return fail("activating", err)
	}
	env.Log.Printf("activated LVM %s/%s (%d table lines on %d PVs, metadata seqno %d) as %s", vg.Name, lv.Name, len(table), len(devs), vg.Seqno, node)
	return name, nil
}

// isPV matches the device holding the PV with this id. lvm2 ids are
// mixed-case, so unlike filesystem UUIDs they are compared exactly.
func isPV(id string) blockdev.Match {
	return func(i blockdev.Info) bool { return i.Type == blockdev.LVM2Member && i.UUID == id }
}

func readDiskFile(path string) (*Disk, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadDisk(f)
}

// compare checks the table derived in the crash kernel against the one
// recorded at load time.
func compare(log *kmsg.Logger, vg *VG, v config.LVM, table []Target) error {
	recorded := FromConfig(v.Table)
	if len(recorded) == 0 {
		return errors.New("\"ukdump load\" recorded no table")
	}
	if vg.Seqno != v.Seqno {
		log.Printf("LVM %s: the VG metadata changed since \"ukdump load\" (seqno %d, now %d)", v.VG+"/"+v.LV, v.Seqno, vg.Seqno)
	}
	if !Agree(recorded, table) {
		return fmt.Errorf("the LV's table changed since \"ukdump load\" (seqno %d, now %d; moved or rebuilt, not only extended or reduced at its end): refusing to write through it (run \"ukdump reload\" after LVM changes)",
			v.Seqno, vg.Seqno)
	}
	if len(recorded) != len(table) || !equalTarget(recorded[len(recorded)-1], table[len(table)-1]) {
		log.Printf("LVM %s: the LV was resized since \"ukdump load\" (%d sectors, now %d); mapping it as it is now", v.VG+"/"+v.LV, tableLength(recorded), tableLength(table))
	}
	for _, id := range PVIDs(table) {
		if !slices.Contains(v.PVs, id) {
			return fmt.Errorf("the LV now also lies on PV %s, which \"ukdump load\" did not record (run \"ukdump reload\" after LVM changes)", id)
		}
	}
	return nil
}

func tableLength(t []Target) uint64 {
	var n uint64
	for _, l := range t {
		n += l.Length
	}
	return n
}

// dmTargets names each PV by the device number it has in this kernel and
// checks that every area lies within its device, so that a PV that shrank
// fails here and not as I/O errors under the dump.
func dmTargets(sys blockdev.Sys, table []Target, devs map[string]blockdev.Device) ([]dm.Target, error) {
	numbers := map[string]string{}
	for id, d := range devs {
		maj, min, err := sys.Number(d.Name)
		if err != nil {
			return nil, err
		}
		numbers[id] = fmt.Sprintf("%d:%d", maj, min)
	}
	var out []dm.Target
	for _, t := range table {
		perArea := t.Length / uint64(len(t.Areas))
		for _, a := range t.Areas {
			size, err := sys.Size(devs[a.PVID].Name)
			if err != nil {
				return nil, err
			}
			if end := a.Offset + perArea; end > size/512 {
				return nil, fmt.Errorf("PV %s on %s has %d sectors, the LV needs %d", a.PVID, devs[a.PVID].Path, size/512, end)
			}
		}
		out = append(out, dm.Target{Start: t.Start, Length: t.Length, Type: t.Type(), Params: t.Params(func(id string) string { return numbers[id] })})
	}
	return out, nil
}
