// Package mounts reads a process's mount table (/proc/self/mountinfo): which
// mounted filesystem holds a path, and where a device is mounted.
package mounts

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo.
type Mount struct {
	ID, Parent int
	// Major and Minor are the device number of the filesystem (st_dev):
	// that of its block device for a disk filesystem, major 0 for tmpfs,
	// proc, overlay and btrfs (whose st_dev is per subvolume).
	Major, Minor uint32
	// Root is the directory of the filesystem that is mounted here: "/"
	// unless this is a bind mount of a subdirectory or a btrfs subvolume.
	Root string
	// Point is the mount point.
	Point  string
	FSType string
	// Source is what was mounted, e.g. /dev/vda1.
	Source string
}

// Table is a mount table in mountinfo order: a later mount on the same
// point hides an earlier one.
type Table []Mount

// Read reads the mount table of the calling process from procDir (/proc).
func Read(procDir string) (Table, error) {
	f, err := os.Open(filepath.Join(procDir, "self", "mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	defer f.Close()
	t, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("mounts: %s: %w", f.Name(), err)
	}
	return t, nil
}

// Parse reads mountinfo lines (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
func Parse(r io.Reader) (Table, error) {
	var t Table
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("line %d: malformed: %q", n, sc.Text())
		}
		var m Mount
		var err error
		if m.ID, err = strconv.Atoi(f[0]); err == nil {
			m.Parent, err = strconv.Atoi(f[1])
		}
		if err == nil {
			m.Major, m.Minor, err = parseDevice(f[2])
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		m.Root, m.Point = unescape(f[3]), unescape(f[4])
		m.FSType, m.Source = unescape(f[sep+1]), unescape(f[sep+2])
		t = append(t, m)
	}
	return t, sc.Err()
}

func parseDevice(s string) (uint32, uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	maj, err1 := strconv.ParseUint(a, 10, 32)
	min, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("device number %q is not major:minor", s)
	}
	return uint32(maj), uint32(min), nil
}

// unescape undoes the octal escapes (\040 for a space) of mountinfo.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Holding returns the mount whose filesystem holds the absolute, clean
// path p, symlinks resolved (see RealPath): the one with the longest mount
// point that is p or a parent of it, the last of those when several are
// mounted on that point.
func (t Table) Holding(p string) (Mount, bool) {
	best, found := Mount{}, false
	for _, m := range t {
		if within(p, m.Point) && (!found || len(m.Point) >= len(best.Point)) {
			best, found = m, true
		}
	}
	return best, found
}

// OfDevice returns the mounts of the filesystem on device major:minor.
func (t Table) OfDevice(major, minor uint32) []Mount {
	var out []Mount
	for _, m := range t {
		if m.Major == major && m.Minor == minor {
			out = append(out, m)
		}
	}
	return out
}

// InFS returns where the path p, which m holds, lies in m's filesystem:
// /var/crash under a /var mount is /crash on that filesystem.
func (m Mount) InFS(p string) string {
	rel := strings.TrimPrefix(p, m.Point)
	return path.Join("/", m.Root, rel)
}

// Here returns where the path p of m's filesystem appears under m's mount
// point, and false when m does not show it (a bind mount of another
// subdirectory).
func (m Mount) Here(p string) (string, bool) {
	if !within(p, m.Root) {
		return "", false
	}
	return path.Join(m.Point, strings.TrimPrefix(p, m.Root)), true
}

// within reports whether p is dir or below it; both are clean and absolute.
func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// RealPath makes p absolute and resolves its symlinks. A path that does not
// exist yet (a dump directory before the first dump, or the target of a
// dangling symlink) is resolved up to its nearest existing parent, the rest
// appended as written.
func RealPath(p string) (string, error) {
	return realPath(p, 0)
}

func realPath(p string, links int) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("mounts: %w", err)
	}
	var rest []string
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, os.ErrNotExist) || p == "/" {
			return "", fmt.Errorf("mounts: %w", err)
		}
		if target, lerr := os.Readlink(p); lerr == nil {
			// A dangling symlink: go where it points.
			if links >= 40 {
				return "", fmt.Errorf("mounts: %s: too many levels of symbolic links", p)
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			return realPath(filepath.Join(append([]string{target}, rest...)...), links+1)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = filepath.Dir(p)
	}
}
