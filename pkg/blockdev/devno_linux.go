package blockdev

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// devNumber returns the major and minor number of the block device at p.
func devNumber(p string) (uint32, uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, fmt.Errorf("%s is not a block device", p)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
}
