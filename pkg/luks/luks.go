// Package luks reads LUKS1 and LUKS2 headers, checks a raw volume key
// against the header's key digest and derives the dm-crypt table that
// cryptsetup would load for the volume.
//
// The crash kernel is handed the volume key itself, not a passphrase, so
// nothing here ever runs a keyslot KDF (Argon2 or PBKDF2 over a
// passphrase): only the cheap PBKDF2 digest that LUKS keeps to recognise the
// volume key. Keyslot areas are never read.
//
// Headers come from disks, which may be damaged or hostile: every size read
// from them is bounded before anything is allocated, and malformed input
// gives an error, never a panic.
package luks

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrWrongKey reports a volume key that does not match the header's
// digest, including a key of the wrong length. Errors wrap it, so test with
// errors.Is.
var ErrWrongKey = errors.New("volume key does not match the header digest")

// ErrUnsupported reports a well-formed header that this package cannot
// map faithfully (integrity, reencryption in progress, unknown digest or
// cipher, ...). It is kept apart from parse errors so a caller can tell
// "damaged" from "valid but not for us". Errors wrap it.
var ErrUnsupported = errors.New("unsupported LUKS configuration")

// Header is what a LUKS1 or LUKS2 header says about the volume and its
// first (for LUKS1, only) data segment.
type Header struct {
	// Version is 1 or 2.
	Version int
	// UUID is the volume UUID as stored, e.g. "0a1b2c3d-...".
	UUID string
	// Label and Subsystem are LUKS2 only ("" for LUKS1).
	Label     string
	Subsystem string
	// Seqid is the LUKS2 header sequence number (cryptsetup's "Epoch"):
	// the copy with the higher one wins.
	Seqid uint64
	// HeaderSize is the LUKS2 hdr_size: binary header plus JSON area of one
	// copy, in bytes (0 for LUKS1).
	HeaderSize uint64
	// Secondary is true when the LUKS2 secondary header copy was used,
	// because the primary was damaged or older.
	Secondary bool

	// SegmentType is the type of segment 0 ("crypt" for every volume
	// cryptsetup activates in one piece; LUKS1 is always "crypt").
	SegmentType string
	// Segments counts all LUKS2 segments, backup segments included
	// (1 for LUKS1). Table refuses anything but 1.
	Segments int
	// Cipher is the dm-crypt cipher spec, e.g. "aes-xts-plain64" or
	// "aes-cbc-essiv:sha256".
	Cipher string
	// KeySize is the volume key length in bytes. For LUKS2 it comes from
	// the keyslots bound to segment 0's digest; 0 when no keyslot is.
	KeySize int
	// Offset is where the encrypted data starts on the device, in bytes.
	Offset uint64
	// Size is the data segment length in bytes; 0 with Dynamic.
	Size uint64
	// Dynamic is true when the segment runs to the end of the device.
	Dynamic bool
	// IVTweak is the LUKS2 segment's iv_tweak, in 512-byte sectors. It is
	// informational: see Table for why the dm iv_offset is 0.
	IVTweak uint64
	// SectorSize is the encryption sector size in bytes (512 for LUKS1).
	SectorSize int
	// Integrity is the LUKS2 segment integrity type (e.g. "hmac(sha256)"),
	// "" when the segment has none.
	Integrity string
	// Flags are the LUKS2 persistent activation flags (config.flags) as
	// stored, e.g. "allow-discards". Table turns the ones dm-crypt knows
	// into table parameters.
	Flags []string
	// Requirements are LUKS2 config.requirements.mandatory, e.g.
	// "online-reencrypt-v2". Table refuses a volume with any.
	Requirements []string

	// Digest is the key digest bound to segment 0.
	Digest Digest
	// Keyslots are the keyslots that hold segment 0's volume key, by ID.
	// Only a passphrase unlock in the first kernel uses them.
	Keyslots []Keyslot
}

// Digest is a LUKS key digest: PBKDF2(Hash, volume key, Salt, Iterations,
// len(Value)) equals Value for the right key.
type Digest struct {
	// Type is "pbkdf2" (LUKS1 is always pbkdf2). "" when LUKS2 binds no
	// digest to segment 0.
	Type string
	// Hash is the PBKDF2 hash, e.g. "sha256" (LUKS1 hash_spec).
	Hash string
	// Iterations is the PBKDF2 iteration count.
	Iterations int
	// Salt is the PBKDF2 salt (32 bytes).
	Salt []byte
	// Value is the stored digest: 20 bytes, or the hash's size in LUKS2.
	Value []byte
}

// magicLen is the length of both LUKS magics.
const magicLen = 6

const (
	magic1 = "LUKS\xba\xbe"
	magic2 = "SKUL\xba\xbe" // LUKS2 secondary header
)

// Parse reads a LUKS1 or LUKS2 header from the start of r (a block device
// or image). For LUKS2 both header copies are checked and the valid one
// with the highest seqid is used, so one damaged copy is tolerated.
func Parse(r io.ReaderAt) (*Header, error) {
	var first [binHeaderSize]byte
	n, err := readFull(r, first[:], 0)
	if err != nil {
		return nil, fmt.Errorf("luks: reading header: %w", err)
	}
	if n >= 8 && string(first[:magicLen]) == magic1 {
		switch v := be16(first[6:]); v {
		case 1:
			if n < luks1HeaderSize {
				return nil, fmt.Errorf("luks: LUKS1 header truncated (%d bytes)", n)
			}
			return parseLUKS1(first[:luks1HeaderSize])
		case 2:
			return parseLUKS2(r)
		default:
			return nil, fmt.Errorf("luks: unknown LUKS version %d", v)
		}
	}
	// A LUKS2 volume whose primary header was overwritten is still
	// recoverable from its secondary copy, so look for one before giving up.
	h, err := parseLUKS2(r)
	if err != nil {
		return nil, fmt.Errorf("luks: no LUKS header (%w)", err)
	}
	return h, nil
}

// readFull reads len(buf) bytes at off, but treats a short read at the end
// of the input as data, not an error: callers check n against what they
// need and report truncation themselves.
func readFull(r io.ReaderAt, buf []byte, off int64) (int, error) {
	n, err := r.ReadAt(buf, off)
	if err == io.EOF || (err == nil && n < len(buf)) {
		return n, nil
	}
	return n, err
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func be64(b []byte) uint64 { return uint64(be32(b))<<32 | uint64(be32(b[4:])) }

// cString returns the NUL-terminated string at the start of b. Like
// cryptsetup, it reads at most len(b)-1 bytes, so a field that fills its
// slot is cut rather than rejected; bytes that could not be passed on
// safely (dm names and tables are text) are an error naming field.
func cString(b []byte, field string) (string, error) {
	n := 0
	for n < len(b)-1 && b[n] != 0 {
		n++
	}
	s := string(b[:n])
	if !printable(s) {
		return "", fmt.Errorf("%s %q has non-printable characters", field, s)
	}
	return s, nil
}

// printable reports whether s is plain ASCII without control characters
// (spaces allowed: labels may have them).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validUUID accepts a UUID in the 8-4-4-4-12 hex form that cryptsetup
// writes (it refuses any other with --uuid). Callers put the UUID into dm
// names ("CRYPT-LUKS2-<uuid>-name"), key descriptions and file names, and
// compare it with what blkid-style probes report, so nothing else may pass:
// a header with another form is damaged.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ReadFile parses the LUKS header of the device or image at path.
func ReadFile(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("luks: %w", err)
	}
	defer f.Close()
	h, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("luks: %s: %w", path, err)
	}
	return h, nil
}
