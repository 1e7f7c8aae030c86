package status

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ukdump/ukdump/pkg/dumpdir"
)

// The files of a dump directory (see cmds/kdumpinit and pkg/capture).
const (
	vmcoreFile = "vmcore"
	dmesgFile  = "vmcore-dmesg.txt"
)

// Dump is one dump directory.
type Dump struct {
	Name string
	// File is the dump file: vmcore when whole, vmcore-incomplete when its
	// writing stopped, empty when there is neither.
	File     string
	Size     int64
	Complete bool
	// Dmesg is whether the dead kernel's log, vmcore-dmesg.txt, is whole.
	Dmesg   bool
	ModTime time.Time
}

// State says in words what the directory holds.
func (d Dump) State() string {
	s := "no vmcore"
	switch {
	case d.Complete:
		s = "complete"
	case d.File != "":
		s = "incomplete (" + d.File + ")"
	}
	if d.Dmesg {
		s += ", with " + dmesgFile
	}
	return s
}

// List returns the dump directories in dir, newest first: the directories
// that hold a vmcore, a vmcore-incomplete or a kernel log. A missing dir
// holds none.
func List(dir string) ([]Dump, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status: dumps: %w", err)
	}
	var out []Dump
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		d := Dump{Name: e.Name()}
		sub := filepath.Join(dir, e.Name())
		for _, f := range []string{vmcoreFile, vmcoreFile + dumpdir.IncompleteSuffix} {
			if fi, err := os.Stat(filepath.Join(sub, f)); err == nil && fi.Mode().IsRegular() {
				d.File, d.Size, d.ModTime, d.Complete = f, fi.Size(), fi.ModTime(), f == vmcoreFile
				break
			}
		}
		_, err := os.Stat(filepath.Join(sub, dmesgFile))
		d.Dmesg = err == nil
		_, ierr := os.Stat(filepath.Join(sub, dmesgFile+dumpdir.IncompleteSuffix))
		if d.File == "" && !d.Dmesg && ierr != nil {
			continue // not a dump directory
		}
		if d.ModTime.IsZero() {
			if info, err := e.Info(); err == nil {
				d.ModTime = info.ModTime()
			}
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].ModTime.Equal(out[j].ModTime) {
			return out[i].ModTime.After(out[j].ModTime)
		}
		return out[i].Name > out[j].Name
	})
	return out, nil
}
