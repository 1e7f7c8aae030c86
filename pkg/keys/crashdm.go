package keys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CrashDM is the kernel's crash_dm_crypt_keys configfs group (Linux 6.16+,
// CONFIG_CRASH_DM_CRYPT). In the first kernel, one item per key names a
// logon key; kexec_file_load copies those keys into crash-reserved memory.
// In the crash kernel, writing restore adds them back as user keys.
type CrashDM struct {
	// Dir is the group directory.
	Dir string
}

// DefaultCrashDM is where the group lives when configfs is mounted at its
// usual place.
func DefaultCrashDM() CrashDM {
	return CrashDM{Dir: "/sys/kernel/config/crash_dm_crypt_keys"}
}

// MountConfigfs mounts configfs at /sys/kernel/config unless the group is
// already visible. The kernel creates that mount point when configfs is
// built in.
func (c CrashDM) MountConfigfs() error {
	if c.Available() {
		return nil
	}
	err := unix.Mount("configfs", "/sys/kernel/config", "configfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("keys: mount configfs: %w", err)
	}
	return nil
}

// Available reports whether the kernel offers the interface.
func (c CrashDM) Available() bool {
	st, err := os.Stat(c.Dir)
	return err == nil && st.IsDir()
}

// Items lists the key items.
func (c CrashDM) Items() ([]string, error) {
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var items []string
	for _, e := range ents {
		if e.IsDir() {
			items = append(items, e.Name())
		}
	}
	return items, nil
}

// Set makes the group hold exactly one item per description, named by the
// map key, removing any other items (a stale item whose logon key is gone
// would make kexec_file_load fail).
func (c CrashDM) Set(items map[string]string) error {
	old, err := c.Items()
	if err != nil {
		return err
	}
	for _, name := range old {
		if _, keep := items[name]; !keep {
			if err := os.Remove(filepath.Join(c.Dir, name)); err != nil {
				return fmt.Errorf("keys: remove stale item: %w", err)
			}
		}
	}
	for name, desc := range items {
		dir := filepath.Join(c.Dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("keys: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "description"), []byte(desc), 0); err != nil {
			return fmt.Errorf("keys: %s: %w", dir, err)
		}
	}
	return nil
}

// Count is the number of items the kernel counts.
func (c CrashDM) Count() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "count"))
	if err != nil {
		return 0, fmt.Errorf("keys: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Reuse tells the kernel to use the keys saved by the previous load on the
// next one, for reloads after the logon keys have expired.
func (c CrashDM) Reuse(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "reuse"), []byte(v), 0); err != nil {
		return fmt.Errorf("keys: reuse: %w", err)
	}
	return nil
}

// Restore, in the crash kernel, adds the saved keys as user keys to the
// calling process's user keyring.
func (c CrashDM) Restore() error {
	if err := os.WriteFile(filepath.Join(c.Dir, "restore"), []byte("1"), 0); err != nil {
		return fmt.Errorf("keys: restore: %w", err)
	}
	return nil
}
