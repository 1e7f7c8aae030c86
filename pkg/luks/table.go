package luks

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Table is one dm-crypt target: what cryptsetup would load for the volume,
// minus the key and the device, which the caller supplies to Line.
type Table struct {
	// Cipher is the dm-crypt cipher spec, e.g. "aes-xts-plain64".
	Cipher string
	// KeySize is the volume key length in bytes.
	KeySize int
	// IVOffset is dm-crypt's <iv_offset>, in 512-byte sectors.
	IVOffset uint64
	// Offset is dm-crypt's <offset>: where the data starts on the device,
	// in 512-byte sectors.
	Offset uint64
	// Length is the target length in 512-byte sectors, a multiple of
	// SectorSize/512.
	Length uint64
	// SectorSize is the encryption sector size in bytes.
	SectorSize int
	// Params are dm-crypt's optional parameters in cryptsetup's order,
	// e.g. ["allow_discards", "sector_size:4096"]; empty for none.
	Params []string
}

// persistentFlags maps LUKS2 config.flags to dm-crypt parameters, in the
// order cryptsetup 2.6 writes them (lib/libdevmapper.c,
// get_dm_crypt_params). Flags not listed here are ignored, as cryptsetup
// does ("no-journal" is for dm-integrity; unknown ones it skips with a
// message).
func persistentFlags() [5][2]string {
	return [...][2]string{
		{"allow-discards", "allow_discards"},
		{"same-cpu-crypt", "same_cpu_crypt"},
		{"submit-from-crypt-cpus", "submit_from_crypt_cpus"},
		{"no-read-workqueue", "no_read_workqueue"},
		{"no-write-workqueue", "no_write_workqueue"},
	}
}

// Table returns the dm-crypt target for segment 0 on a device of
// deviceSize bytes, doing what cryptsetup 2.6 does when it activates the
// volume (lib/luks2/luks2_json_metadata.c LUKS2_activate,
// lib/libdevmapper.c get_dm_crypt_params):
//
//   - iv_offset is 0. cryptsetup passes crypt_get_iv_offset() (lib/setup.c),
//     which is 0 for LUKS1 and LUKS2 whatever the segment's iv_tweak says;
//     iv_tweak is only used while a reencryption splits the volume into
//     several segments (LUKS2_assembly_multisegment_dmd), which Table
//     refuses.
//   - iv_large_sectors is never set: cryptsetup sets it only for plain
//     mode (--iv-large-sectors) and BitLocker, so with sector_size 4096 the
//     IV of each 4096-byte sector is still its 512-byte sector number.
//   - sector_size:N is added when N is not 512, after the flag parameters.
//   - A dynamic segment takes the rest of the device, rounded down to the
//     sector size (dm-crypt rejects a length that is not a multiple; 2.6
//     would fail there, we map the whole sectors). A fixed size is used as
//     stored, as cryptsetup 2.7 does (2.6 ignores it and maps to the end).
//
// It refuses, with an error wrapping ErrUnsupported, what it cannot map
// as a single dm-crypt target: mandatory requirements (reencryption in
// progress), more or other segments than one "crypt", integrity (that needs
// a dm-integrity device under dm-crypt), and cipher specs outside a known
// set. A device too small for the segment is a plain error.
func (h *Header) Table(deviceSize uint64) (Table, error) {
	if len(h.Requirements) > 0 {
		return Table{}, fmt.Errorf("luks: %s: mandatory requirements %q (reencryption in progress?): %w", h.UUID, h.Requirements, ErrUnsupported)
	}
	if h.Segments != 1 {
		return Table{}, fmt.Errorf("luks: %s: %d segments, only one can be mapped: %w", h.UUID, h.Segments, ErrUnsupported)
	}
	if h.SegmentType != "crypt" {
		return Table{}, fmt.Errorf("luks: %s: segment type %q is not crypt: %w", h.UUID, h.SegmentType, ErrUnsupported)
	}
	if h.Integrity != "" {
		return Table{}, fmt.Errorf("luks: %s: segment has integrity %q (needs dm-integrity): %w", h.UUID, h.Integrity, ErrUnsupported)
	}
	if h.KeySize == 0 {
		// A LUKS2 digest with no keyslot left says nothing of the key
		// length, and a table needs it.
		return Table{}, fmt.Errorf("luks: %s: key size unknown: no keyslot is bound to segment 0's digest: %w", h.UUID, ErrUnsupported)
	}
	if err := checkCipher(h.Cipher, h.KeySize); err != nil {
		return Table{}, fmt.Errorf("luks: %s: %w", h.UUID, err)
	}
	ss := h.SectorSize
	if ss < 512 || ss > 4096 || ss&(ss-1) != 0 {
		return Table{}, fmt.Errorf("luks: %s: sector size %d (dm-crypt takes 512..4096, a power of 2): %w", h.UUID, ss, ErrUnsupported)
	}
	if h.Offset%512 != 0 {
		return Table{}, fmt.Errorf("luks: %s: data offset %d is not a multiple of 512", h.UUID, h.Offset)
	}
	if deviceSize <= h.Offset {
		return Table{}, fmt.Errorf("luks: %s: device of %d bytes is too small for data offset %d", h.UUID, deviceSize, h.Offset)
	}
	avail := deviceSize - h.Offset
	var length uint64
	if h.Dynamic {
		length = avail - avail%uint64(ss)
		if length == 0 {
			return Table{}, fmt.Errorf("luks: %s: device of %d bytes has no whole %d-byte sector after offset %d", h.UUID, deviceSize, ss, h.Offset)
		}
	} else {
		if h.Size == 0 || h.Size%uint64(ss) != 0 {
			return Table{}, fmt.Errorf("luks: %s: segment size %d is not a multiple of sector size %d", h.UUID, h.Size, ss)
		}
		if h.Size > avail {
			return Table{}, fmt.Errorf("luks: %s: device of %d bytes is too small for %d bytes at offset %d", h.UUID, deviceSize, h.Size, h.Offset)
		}
		length = h.Size
	}
	t := Table{
		Cipher:     h.Cipher,
		KeySize:    h.KeySize,
		IVOffset:   0,
		Offset:     h.Offset / 512,
		Length:     length / 512,
		SectorSize: ss,
	}
	for _, pf := range persistentFlags() {
		if slices.Contains(h.Flags, pf[0]) {
			t.Params = append(t.Params, pf[1])
		}
	}
	if ss != 512 {
		t.Params = append(t.Params, "sector_size:"+strconv.Itoa(ss))
	}
	return t, nil
}

// Line renders the table as dmsetup and the DM_TABLE_LOAD ioctl take it:
// "0 <length> crypt <cipher> <key> <iv_offset> <device> <offset>
// [<#params> <params>...]". key is the hex volume key or a keyring
// reference such as ":64:logon:cryptsetup:..."; pass a placeholder to log
// a table without its secret. device is a path or "major:minor". Neither
// may contain spaces: the table is space-separated and has no quoting.
func (t Table) Line(device, key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "0 %d crypt %s %s %d %s %d", t.Length, t.Cipher, key, t.IVOffset, device, t.Offset)
	if len(t.Params) > 0 {
		fmt.Fprintf(&b, " %d %s", len(t.Params), strings.Join(t.Params, " "))
	}
	return b.String()
}

// Ciphers, chaining modes and IV generators that LUKS volumes use and
// dm-crypt's "cipher-chainmode-ivmode[:ivopts]" form accepts. Anything
// else (kernel crypto API "capi:" specs, AEAD, cipher_null, Adiantum) is
// refused rather than passed to the kernel unchecked: the spec goes into a
// space-separated table line.
func knownCipher(s string) bool {
	switch s {
	case "aes", "serpent", "twofish", "camellia", "sm4", "cast5", "cast6", "blowfish":
		return true
	}
	return false
}

func knownMode(s string) bool {
	switch s {
	case "xts", "cbc", "lrw", "ecb":
		return true
	}
	return false
}

func knownIV(s string) bool {
	switch s {
	case "plain", "plain64", "plain64be", "benbi", "null", "eboiv", "essiv":
		return true
	}
	return false
}

// essivHash lists the kernel hash names ESSIV is used with.
func essivHash(s string) bool {
	switch s {
	case "sha1", "sha224", "sha256", "sha384", "sha512", "wp512", "rmd160", "sm3":
		return true
	}
	return false
}

// checkCipher validates a cipher spec and, for AES where the rules are
// fixed, that keySize fits the mode.
func checkCipher(spec string, keySize int) error {
	if keySize <= 0 || keySize > maxKeySize {
		return fmt.Errorf("key size %d out of range 1..%d: %w", keySize, maxKeySize, ErrUnsupported)
	}
	parts := strings.Split(spec, "-")
	bad := func(why string) error {
		return fmt.Errorf("cipher %q: %s: %w", spec, why, ErrUnsupported)
	}
	if len(parts) < 2 || len(parts) > 3 {
		return bad("not cipher-mode-iv")
	}
	cipher, mode := parts[0], parts[1]
	if !knownCipher(cipher) {
		return bad("unknown cipher " + strconv.Quote(cipher))
	}
	if !knownMode(mode) {
		return bad("unknown chaining mode " + strconv.Quote(mode))
	}
	if mode == "ecb" {
		if len(parts) != 2 {
			return bad("ecb takes no IV")
		}
	} else {
		if len(parts) != 3 {
			return bad("no IV mode")
		}
		iv, opts, hasOpts := strings.Cut(parts[2], ":")
		if !knownIV(iv) {
			return bad("unknown IV mode " + strconv.Quote(iv))
		}
		if (iv == "essiv") != hasOpts || (hasOpts && !essivHash(opts)) {
			return bad("bad IV options")
		}
	}
	if cipher != "aes" {
		return nil
	}
	aesKey := map[string][]int{"xts": {32, 48, 64}, "lrw": {32, 40, 48}, "cbc": {16, 24, 32}, "ecb": {16, 24, 32}}
	for _, n := range aesKey[mode] {
		if keySize == n {
			return nil
		}
	}
	return fmt.Errorf("cipher %q: %d-byte key does not fit: %w", spec, keySize, ErrUnsupported)
}
