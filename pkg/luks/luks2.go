package luks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// LUKS2 binary header layout (big-endian), as cryptsetup's
// struct luks2_hdr_disk.
const (
	binHeaderSize     = 4096
	luks2OffHdrSize   = 8
	luks2OffSeqid     = 16
	luks2OffLabel     = 24
	luks2LabelLen     = 48
	luks2OffCsumAlg   = 72
	luks2CsumAlgLen   = 32
	luks2OffUUID      = 168
	luks2UUIDLen      = 40
	luks2OffSubsystem = 208
	luks2OffHdrOffset = 256
	luks2OffCsum      = 448
	luks2CsumLen      = 64
)

// LUKS2 hdr_size may only be a power of two from 16 KiB to 4 MiB
// (cryptsetup's LUKS2_check_metadata_area_size); these are also the
// offsets at which cryptsetup looks for a secondary header when the
// primary is unreadable (LUKS2_HDR2_OFFSETS). The maximum bounds what a
// header makes us read and allocate: 4 MiB per copy.
const (
	minHeaderSize = 0x4000
	maxHeaderSize = 0x400000
)

func validHeaderSize(n uint64) bool {
	return n >= minHeaderSize && n <= maxHeaderSize && n&(n-1) == 0
}

// parseLUKS2 follows cryptsetup's LUKS2_disk_hdr_read: read the primary
// copy; if it is good, the secondary sits right after it (at hdr_size);
// if not, its hdr_size cannot be trusted and the secondary is searched for
// at every offset a header size allows. Of two good copies the one with
// the higher seqid wins, the primary on a tie.
func parseLUKS2(r io.ReaderAt) (*Header, error) {
	primary, errP := readLUKS2Copy(r, 0, false)
	var secondary *Header
	var errS error
	if errP == nil {
		secondary, errS = readLUKS2Copy(r, primary.HeaderSize, true)
	} else {
		errS = errors.New("not found at any possible offset")
		for off := uint64(minHeaderSize); off <= maxHeaderSize; off *= 2 {
			h, err := readLUKS2Copy(r, off, true)
			if err == nil {
				secondary, errS = h, nil
				break
			}
			if ce := (*headerCopyError)(nil); errors.As(err, &ce) && ce.found {
				// A secondary header is there but bad: say why, rather
				// than "not found".
				errS = err
			}
		}
	}
	switch {
	case errP == nil && errS == nil:
		if secondary.Seqid > primary.Seqid {
			return secondary, nil
		}
		return primary, nil
	case errP == nil:
		return primary, nil
	case errS == nil:
		return secondary, nil
	}
	return nil, fmt.Errorf("luks: LUKS2: primary header: %v; secondary header: %v", errP, errS)
}

// headerCopyError tells a header copy that is present but damaged (found)
// from one that is simply not there, for the error message.
type headerCopyError struct {
	found bool
	err   error
}

func (e *headerCopyError) Error() string { return e.err.Error() }
func (e *headerCopyError) Unwrap() error { return e.err }

func notFound(format string, a ...any) error {
	return &headerCopyError{err: fmt.Errorf(format, a...)}
}

func damaged(format string, a ...any) error {
	return &headerCopyError{found: true, err: fmt.Errorf(format, a...)}
}

// readLUKS2Copy reads, checks and decodes the header copy at off.
func readLUKS2Copy(r io.ReaderAt, off uint64, secondary bool) (*Header, error) {
	var bin [binHeaderSize]byte
	n, err := readFull(r, bin[:], int64(off))
	if err != nil {
		return nil, notFound("at %d: %v", off, err)
	}
	if n < binHeaderSize {
		return nil, notFound("at %d: truncated (%d bytes)", off, n)
	}
	want := magic1
	if secondary {
		want = magic2
	}
	if string(bin[:magicLen]) != want {
		return nil, notFound("at %d: no LUKS2 magic", off)
	}
	if v := be16(bin[6:]); v != 2 {
		return nil, damaged("at %d: version %d, want 2", off, v)
	}
	if ho := be64(bin[luks2OffHdrOffset:]); ho != off {
		return nil, damaged("at %d: hdr_offset says %d", off, ho)
	}
	hdrSize := be64(bin[luks2OffHdrSize:])
	if !validHeaderSize(hdrSize) {
		return nil, damaged("at %d: bad hdr_size %d", off, hdrSize)
	}
	if secondary && hdrSize != off {
		return nil, damaged("at %d: hdr_size %d does not match its offset", off, hdrSize)
	}
	csumAlg, err := cString(bin[luks2OffCsumAlg:luks2OffCsumAlg+luks2CsumAlgLen], "csum_alg")
	if err != nil {
		return nil, damaged("at %d: %v", off, err)
	}
	newHash, err := hashByName(csumAlg)
	if err != nil {
		return nil, damaged("at %d: checksum: %v", off, err)
	}

	// Only now that hdr_size is one of the known sizes (at most 4 MiB) is
	// the JSON area allocated.
	area := make([]byte, hdrSize-binHeaderSize)
	n, err = readFull(r, area, int64(off+binHeaderSize))
	if err != nil {
		return nil, damaged("at %d: reading JSON area: %v", off, err)
	}
	if n < len(area) {
		return nil, damaged("at %d: JSON area truncated (%d of %d bytes)", off, n, len(area))
	}
	hh := newHash()
	stored := bin[luks2OffCsum : luks2OffCsum+hh.Size()]
	var zeroed [binHeaderSize]byte
	copy(zeroed[:], bin[:])
	clear(zeroed[luks2OffCsum : luks2OffCsum+luks2CsumLen])
	hh.Write(zeroed[:])
	hh.Write(area)
	if !bytes.Equal(hh.Sum(nil), stored) {
		return nil, damaged("at %d: %s checksum mismatch", off, csumAlg)
	}

	h := &Header{
		Version:    2,
		Seqid:      be64(bin[luks2OffSeqid:]),
		HeaderSize: hdrSize,
		Secondary:  secondary,
	}
	if h.Label, err = cString(bin[luks2OffLabel:luks2OffLabel+luks2LabelLen], "label"); err != nil {
		return nil, damaged("at %d: %v", off, err)
	}
	if h.Subsystem, err = cString(bin[luks2OffSubsystem:luks2OffSubsystem+luks2LabelLen], "subsystem"); err != nil {
		return nil, damaged("at %d: %v", off, err)
	}
	if h.UUID, err = cString(bin[luks2OffUUID:luks2OffUUID+luks2UUIDLen], "uuid"); err != nil {
		return nil, damaged("at %d: %v", off, err)
	}
	if !validUUID(h.UUID) {
		return nil, damaged("at %d: bad uuid %q", off, h.UUID)
	}
	if err := decodeJSONArea(h, area); err != nil {
		return nil, damaged("at %d: JSON: %v", off, err)
	}
	return h, nil
}
