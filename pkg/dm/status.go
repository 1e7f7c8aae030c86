package dm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrKeyInKeyring means a live mapping names its key by a keyring reference,
// so the table holds no key bytes.
var ErrKeyInKeyring = errors.New("the mapping's key is in the kernel keyring, not in its table")

// TableKey returns the key of a live dm-crypt mapping from its table, which
// holds it in hex when the mapping was made without the keyring (LUKS1, or
// cryptsetup --disable-keyring). When the table holds a keyring reference
// instead, it returns the reference and ErrKeyInKeyring. Only root can read
// keys this way. The caller wipes the returned bytes.
//
// devmapper.go has no table-status call, hence this one ioctl.
func TableKey(name string) (key []byte, ref string, err error) {
	params, err := tableParams(name)
	defer clear(params)
	if err != nil {
		return nil, "", err
	}
	// <cipher> <key> <iv_offset> <device> <offset> [...]
	fields := bytes.Fields(params)
	if len(fields) < 5 {
		return nil, "", fmt.Errorf("dm: %s: malformed crypt table", name)
	}
	field := fields[1]
	if field[0] == ':' {
		return nil, string(field), fmt.Errorf("dm: %s: %w", name, ErrKeyInKeyring)
	}
	key = make([]byte, hex.DecodedLen(len(field)))
	if _, err := hex.Decode(key, field); err != nil {
		clear(key)
		return nil, "", fmt.Errorf("dm: %s: key field is neither hex nor a keyring reference", name)
	}
	return key, "", nil
}

// tableParams returns the parameter string of the single crypt target of
// name. The kernel is asked to wipe its copy of the buffer
// (DM_SECURE_DATA_FLAG); the caller wipes ours.
func tableParams(name string) ([]byte, error) {
	buf := make([]byte, 16<<10)
	defer clear(buf)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	hdr.Version = [3]uint32{4, 0, 0}
	hdr.Data_size = uint32(len(buf))
	hdr.Data_start = unix.SizeofDmIoctl
	hdr.Flags = unix.DM_STATUS_TABLE_FLAG | unix.DM_SECURE_DATA_FLAG
	copy(hdr.Name[:], name)
	if err := control(unix.DM_TABLE_STATUS, buf); err != nil {
		return nil, fmt.Errorf("dm: table status of %s: %w", name, err)
	}
	if hdr.Flags&unix.DM_BUFFER_FULL_FLAG != 0 {
		return nil, fmt.Errorf("dm: table of %s does not fit in %d bytes", name, len(buf))
	}
	if hdr.Target_count != 1 {
		return nil, fmt.Errorf("dm: %s has %d targets, want one crypt target", name, hdr.Target_count)
	}
	start := int(hdr.Data_start)
	if start+unix.SizeofDmTargetSpec > len(buf) {
		return nil, fmt.Errorf("dm: %s: short table status", name)
	}
	spec := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[start]))
	if typ := strings.TrimRight(string(spec.Target_type[:]), "\x00"); typ != "crypt" {
		return nil, fmt.Errorf("dm: %s is a %s target, not crypt", name, typ)
	}
	p := buf[start+unix.SizeofDmTargetSpec:]
	if i := bytes.IndexByte(p, 0); i >= 0 {
		p = p[:i]
	}
	return bytes.Clone(p), nil
}
