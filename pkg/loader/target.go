package loader

import (
	"fmt"
	"strings"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/mounts"
)

// Target is the dump target as the running system shows it.
type Target struct {
	Device blockdev.Device
	Info   blockdev.Info
	// FS is the target as kdumpinit gets it: type, spec, UUID, mount
	// options.
	FS config.Target
	// Path is the dump directory on the target filesystem.
	Path string
	// Holding is set when ukdump.conf names no target: it is the
	// configured path, and the target is the filesystem that holds it in
	// this system (as kdump-utils does).
	Holding string
}

// String describes t for people: "ext4 UUID=… on /dev/vda1".
func (t Target) String() string {
	s := t.FS.FSType + " " + t.FS.Spec
	if t.FS.Spec != "UUID="+t.FS.UUID {
		s += " (UUID=" + t.FS.UUID + ")"
	}
	s += " on " + t.Device.Path
	if t.Holding != "" {
		s += ", the filesystem holding " + t.Holding
	}
	return s
}

// FindTarget finds the target of cf in the running system: the device of
// its target line, or without one the filesystem that holds cf.Path.
func FindTarget(o Options, cf *config.File) (Target, error) {
	if !cf.HasTarget() {
		return targetHolding(o, cf.Path)
	}
	dev, info, err := o.Sys.Resolve(cf.Target.Spec)
	if err != nil {
		return Target{}, fmt.Errorf("loader: dump target: %w", err)
	}
	if fsFamily(info.Type) != fsFamily(cf.Target.FSType) {
		return Target{}, fmt.Errorf("loader: dump target %s holds %s, not %s", cf.Target.Spec, info.Type, cf.Target.FSType)
	}
	fs := cf.Target
	fs.UUID = info.UUID
	return Target{Device: dev, Info: info, FS: fs, Path: cf.Path}, nil
}

// targetHolding finds the mounted filesystem that holds dir (which need not
// exist yet) through the mount table, and makes dir a path on it: /var/crash
// on a separate /var is /crash there. A root filesystem on dm-crypt is a
// target like any other: its LUKS volume is found under it.
func targetHolding(o Options, dir string) (Target, error) {
	fail := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("loader: no target line in %s, and the filesystem holding path %s: %s",
			o.ConfigFile, dir, fmt.Sprintf(format, args...))
	}
	real, err := mounts.RealPath(dir)
	if err != nil {
		return fail("%v", err)
	}
	tab, err := mounts.Read(o.ProcDir)
	if err != nil {
		return fail("%v", err)
	}
	m, ok := tab.Holding(real)
	if !ok {
		return fail("no mount holds %s", real)
	}
	if !config.KnownFS(m.FSType) {
		return fail("%s on %s is %s; ukdump dumps to %s: add a target line", m.Source, m.Point, m.FSType, strings.Join(config.FSTypes(), ", "))
	}
	dev, err := o.Sys.ByNumber(m.Major, m.Minor)
	if err != nil && strings.HasPrefix(m.Source, "/dev/") {
		// btrfs gives each subvolume an anonymous device number: the
		// device is the one mounted.
		if d, _, rerr := o.Sys.Resolve(m.Source); rerr == nil {
			dev, err = d, nil
		}
	}
	if err != nil {
		return fail("%s on %s: %v: add a target line", m.Source, m.Point, err)
	}
	info, err := blockdev.ProbePath(dev.Path)
	if err != nil {
		return fail("%v", err)
	}
	if fsFamily(info.Type) != fsFamily(m.FSType) {
		return fail("%s is mounted as %s but holds %s", dev.Path, m.FSType, info.Type)
	}
	fs := config.Target{FSType: m.FSType, Spec: "UUID=" + info.UUID, UUID: info.UUID}
	if m.FSType == "btrfs" {
		// mountinfo's root of a subvolume is its path from the top
		// level, so the crash kernel mounts the top level.
		fs.Options = "subvolid=5"
	}
	return Target{Device: dev, Info: info, FS: fs, Path: m.InFS(real), Holding: dir}, nil
}
