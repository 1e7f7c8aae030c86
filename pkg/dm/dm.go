// Package dm creates and inspects dm-crypt mappings through device-mapper
// ioctls, without libdevmapper, udev or cryptsetup.
package dm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/anatol/devmapper.go"
	"golang.org/x/sys/unix"

	"github.com/ukdump/ukdump/pkg/keys"
)

// Crypt is one dm-crypt mapping over the whole data area of a device.
type Crypt struct {
	// Name is the mapping name; the device appears as /dev/mapper/<Name>.
	Name string
	// UUID is the device-mapper UUID, by cryptsetup's convention
	// CRYPT-LUKS2-<uuid without dashes>-<name>, so tools recognise it.
	UUID string
	// Device is the encrypted block device.
	Device string
	// Cipher is the dm-crypt cipher spec, e.g. "aes-xts-plain64".
	Cipher string
	// KeyRef names the key in the kernel keyring (":32:logon:desc").
	// dm-crypt also accepts hex key bytes here, but a reference keeps the
	// key out of this process's memory and of the ioctl buffer.
	KeyRef string
	// IVOffset is added to the sector number for the IV.
	IVOffset uint64
	// Offset is where data starts on Device; Length the mapped size. Both
	// in 512-byte sectors.
	Offset, Length uint64
	// SectorSize is the encryption sector size (512 or 4096).
	SectorSize int
	// Params are optional dm-crypt parameters, e.g. "allow_discards". A
	// sector_size parameter among them is replaced by one made from
	// SectorSize.
	Params []string
}

// DevDir holds the device-mapper nodes.
const DevDir = "/dev/mapper"

// CreateCrypt creates the mapping, activates it and makes /dev/mapper/<name>
// (devtmpfs only makes /dev/dm-N, and there is no udev to add the link).
// It returns the node's path.
func CreateCrypt(c Crypt) (string, error) {
	if !keys.IsReference(c.KeyRef) {
		return "", fmt.Errorf("dm: %s: key must be a keyring reference", c.Name)
	}
	table := devmapper.CryptTable{
		Start:         0,
		Length:        c.Length * devmapper.SectorSize,
		BackendDevice: c.Device,
		BackendOffset: c.Offset * devmapper.SectorSize,
		Encryption:    c.Cipher,
		KeyID:         c.KeyRef,
		IVTweak:       c.IVOffset,
		Flags:         withoutSectorSize(c.Params),
		SectorSize:    uint64(c.SectorSize),
	}
	if err := devmapper.CreateAndLoad(c.Name, c.UUID, 0, table); err != nil {
		return "", fmt.Errorf("dm: create %s on %s: %w", c.Name, c.Device, err)
	}
	node, err := makeNode(c.Name)
	if err != nil {
		devmapper.Remove(c.Name)
		return "", err
	}
	return node, nil
}

// withoutSectorSize drops sector_size:N, which devmapper.go adds itself
// from SectorSize: dm-crypt refuses a table that names it twice.
func withoutSectorSize(params []string) []string {
	var out []string
	for _, p := range params {
		if !strings.HasPrefix(p, "sector_size:") {
			out = append(out, p)
		}
	}
	return out
}

func makeNode(name string) (string, error) {
	info, err := devmapper.InfoByName(name)
	if err != nil {
		return "", fmt.Errorf("dm: %s: %w", name, err)
	}
	if err := os.MkdirAll(DevDir, 0o755); err != nil {
		return "", fmt.Errorf("dm: %w", err)
	}
	node := filepath.Join(DevDir, name)
	os.Remove(node)
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(info.DevNo)); err != nil {
		return "", fmt.Errorf("dm: mknod %s: %w", node, err)
	}
	return node, nil
}

// Remove deactivates the mapping and removes its node.
func Remove(name string) error {
	err := devmapper.Remove(name)
	if rerr := os.Remove(filepath.Join(DevDir, name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("dm: remove %s: %w", name, err)
	}
	return nil
}

// Mappings are mappings made one after another, each maybe on top of
// the ones before (an LV on a LUKS volume): Close removes them last first.
type Mappings struct {
	names []string
}

// Add records a mapping made.
func (m *Mappings) Add(name string) { m.names = append(m.names, name) }

// Close removes the mappings, last first, and forgets them.
func (m *Mappings) Close() error {
	var errs []error
	for i := len(m.names) - 1; i >= 0; i-- {
		errs = append(errs, Remove(m.names[i]))
	}
	m.names = nil
	return errors.Join(errs...)
}

// EnsureControl makes /dev/mapper/control when devtmpfs has not (it does on
// kernels with dm built in; with dm-mod loaded as a module the node comes
// from the misc device, whose number sysfs gives).
func EnsureControl(sysDir string) error {
	node := filepath.Join(DevDir, "control")
	if _, err := os.Stat(node); err == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(sysDir, "class", "misc", "device-mapper", "dev"))
	if err != nil {
		return fmt.Errorf("dm: device-mapper is not in this kernel (is dm-mod loaded?): %w", err)
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
		return fmt.Errorf("dm: control device number %q: %w", b, err)
	}
	if err := os.MkdirAll(DevDir, 0o755); err != nil {
		return fmt.Errorf("dm: %w", err)
	}
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(maj, min))); err != nil {
		return fmt.Errorf("dm: mknod %s: %w", node, err)
	}
	return nil
}
