package dm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
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
// name, wiped by the caller.
func tableParams(name string) ([]byte, error) {
	var params []byte
	err := walkTable(name, func(n int, start, length uint64, typ string, p []byte) error {
		switch {
		case n != 1:
			return fmt.Errorf("dm: %s has %d targets, want one crypt target", name, n)
		case typ != "crypt":
			return fmt.Errorf("dm: %s is a %s target, not crypt", name, typ)
		}
		params = bytes.Clone(p)
		return nil
	})
	return params, err
}

// LiveTable returns the table of the live mapping name as the kernel holds
// it, as dmsetup table prints it. It is for mappings without keys: a crypt
// target is refused, so no key reaches a string this process cannot wipe.
func LiveTable(name string) ([]Target, error) {
	var out []Target
	err := walkTable(name, func(n int, start, length uint64, typ string, p []byte) error {
		if typ == "crypt" {
			return fmt.Errorf("dm: %s holds a crypt target, whose table LiveTable does not read", name)
		}
		out = append(out, Target{Start: start, Length: length, Type: typ, Params: string(p)})
		return nil
	})
	return out, err
}

// walkTable asks the kernel for the table of name (DM_TABLE_STATUS with
// DM_STATUS_TABLE_FLAG) and calls f for each target with the number of
// targets and the target's parameters, which f copies if it keeps them.
// The kernel is asked to wipe its copy of the buffer (DM_SECURE_DATA_FLAG),
// and ours is wiped on return: a crypt table holds its key.
//
// devmapper.go has no table-status call, hence this one ioctl.
func walkTable(name string, f func(n int, start, length uint64, typ string, params []byte) error) error {
	buf := make([]byte, 16<<10)
	defer clear(buf)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	hdr.Version = [3]uint32{4, 0, 0}
	hdr.Data_size = uint32(len(buf))
	hdr.Data_start = unix.SizeofDmIoctl
	hdr.Flags = unix.DM_STATUS_TABLE_FLAG | unix.DM_SECURE_DATA_FLAG
	copy(hdr.Name[:], name)
	if err := control(unix.DM_TABLE_STATUS, buf); err != nil {
		return fmt.Errorf("dm: table status of %s: %w", name, err)
	}
	if hdr.Flags&unix.DM_BUFFER_FULL_FLAG != 0 {
		return fmt.Errorf("dm: table of %s does not fit in %d bytes", name, len(buf))
	}
	return walkSpecs(name, buf, f)
}

// walkSpecs reads the target specs of a DM_TABLE_STATUS answer in buf. In
// answers, unlike in DM_TABLE_LOAD, each spec's next is its offset from
// the start of the data (dm-ioctl.c's retrieve_status).
func walkSpecs(name string, buf []byte, f func(n int, start, length uint64, typ string, params []byte) error) error {
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	n := int(hdr.Target_count)
	if n == 0 {
		return fmt.Errorf("dm: %s has no table", name)
	}
	data := int(hdr.Data_start)
	end := min(int(hdr.Data_size), len(buf))
	off := data
	for i := 0; i < n; i++ {
		if off < data || off+unix.SizeofDmTargetSpec > end {
			return fmt.Errorf("dm: %s: short table status", name)
		}
		spec := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[off]))
		p := buf[off+unix.SizeofDmTargetSpec : end]
		if j := bytes.IndexByte(p, 0); j >= 0 {
			p = p[:j]
		}
		typ := unix.ByteSliceToString(spec.Target_type[:])
		if err := f(n, spec.Sector_start, spec.Length, typ, p); err != nil {
			return err
		}
		next := data + int(spec.Next)
		if next <= off && i < n-1 {
			return fmt.Errorf("dm: %s: malformed table status", name)
		}
		off = next
	}
	return nil
}
