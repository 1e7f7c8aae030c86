package dumpdir

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveIn makes the directory rel (absolute, as in ukdump.conf's path)
// inside root, the mounted target, and returns its real path. Symlinks on
// the way are followed as the first kernel would see them on that
// filesystem, with root as "/": an absolute link (/var/crash -> /srv/crash)
// lands inside the target, never in the crash kernel's own root, which is
// RAM and lost at reboot. Crossing into another mount is refused too.
func resolveIn(root, rel string) (string, error) {
	rootFd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("dumpdir: %s: %w", root, err)
	}
	defer unix.Close(rootFd)
	how := &unix.OpenHow{
		Flags:   unix.O_DIRECTORY | unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS,
	}
	prefix := "."
	for _, comp := range strings.Split(strings.Trim(path.Clean(rel), "/"), "/") {
		if comp == "" {
			continue
		}
		next := path.Join(prefix, comp)
		fd, err := unix.Openat2(rootFd, next, how)
		if errors.Is(err, unix.ENOENT) {
			// Make it in the directory the prefix resolved to.
			var parent int
			if parent, err = unix.Openat2(rootFd, prefix, how); err != nil {
				return "", fmt.Errorf("dumpdir: %s in %s: %w", prefix, root, err)
			}
			err = unix.Mkdirat(parent, comp, 0o700)
			unix.Close(parent)
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return "", fmt.Errorf("dumpdir: making %s in %s: %w", next, root, err)
			}
			fd, err = unix.Openat2(rootFd, next, how)
		}
		if err != nil {
			return "", fmt.Errorf("dumpdir: %s in %s: %w (a dangling symlink, a file, or another filesystem?)", next, root, err)
		}
		unix.Close(fd)
		prefix = next
	}
	fd, err := unix.Openat2(rootFd, prefix, how)
	if err != nil {
		return "", fmt.Errorf("dumpdir: %s in %s: %w", prefix, root, err)
	}
	defer unix.Close(fd)
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("dumpdir: resolving %s: %w", rel, err)
	}
	absRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("dumpdir: %w", err)
	}
	if real != absRoot && !strings.HasPrefix(real, absRoot+"/") {
		return "", fmt.Errorf("dumpdir: %s resolved to %s, outside %s", rel, real, absRoot)
	}
	return real, nil
}
