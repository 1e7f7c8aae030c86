package luks

import (
	"fmt"
)

// LUKS1 on-disk layout (big-endian), from the LUKS1 specification.
const (
	luks1HeaderSize  = 592 // phdr with its 8 keyslot descriptors
	luks1DigestSize  = 20  // mk_digest is fixed at SHA-1 size whatever hash_spec says
	luks1SaltSize    = 32
	luks1OffCipher   = 8
	luks1OffMode     = 40
	luks1OffHash     = 72
	luks1OffPayload  = 104
	luks1OffKeyBytes = 108
	luks1OffDigest   = 112
	luks1OffSalt     = 132
	luks1OffIter     = 164
	luks1OffUUID     = 168
	luks1FieldLen    = 32
	luks1UUIDLen     = 40
)

// maxKeySize bounds the volume key length read from a header: far above
// any dm-crypt cipher's key (AES-XTS-256 takes 64 bytes), low enough that a
// garbage value is caught at parse time rather than in the kernel.
const maxKeySize = 512

func parseLUKS1(b []byte) (*Header, error) {
	cipherName, err := cString(b[luks1OffCipher:luks1OffCipher+luks1FieldLen], "cipher_name")
	if err != nil {
		return nil, fmt.Errorf("luks: LUKS1: %w", err)
	}
	cipherMode, err := cString(b[luks1OffMode:luks1OffMode+luks1FieldLen], "cipher_mode")
	if err != nil {
		return nil, fmt.Errorf("luks: LUKS1: %w", err)
	}
	hashSpec, err := cString(b[luks1OffHash:luks1OffHash+luks1FieldLen], "hash_spec")
	if err != nil {
		return nil, fmt.Errorf("luks: LUKS1: %w", err)
	}
	uuid, err := cString(b[luks1OffUUID:luks1OffUUID+luks1UUIDLen], "uuid")
	if err != nil {
		return nil, fmt.Errorf("luks: LUKS1: %w", err)
	}
	if !validUUID(uuid) {
		return nil, fmt.Errorf("luks: LUKS1: bad uuid %q", uuid)
	}
	keyBytes := be32(b[luks1OffKeyBytes:])
	if keyBytes == 0 || keyBytes > maxKeySize {
		return nil, fmt.Errorf("luks: LUKS1: key_bytes %d out of range 1..%d", keyBytes, maxKeySize)
	}
	iter := be32(b[luks1OffIter:])
	if iter == 0 {
		return nil, fmt.Errorf("luks: LUKS1: mk_digest_iter is 0")
	}
	h := &Header{
		Version:     1,
		UUID:        uuid,
		SegmentType: "crypt",
		Segments:    1,
		KeySize:     int(keyBytes),
		// payload_offset is in 512-byte sectors and 32 bits wide, so the
		// product cannot overflow.
		Offset:     uint64(be32(b[luks1OffPayload:])) * 512,
		Dynamic:    true,
		SectorSize: 512,
		Digest: Digest{
			Type:       "pbkdf2",
			Hash:       hashSpec,
			Iterations: int(iter),
			Salt:       append([]byte(nil), b[luks1OffSalt:luks1OffSalt+luks1SaltSize]...),
			Value:      append([]byte(nil), b[luks1OffDigest:luks1OffDigest+luks1DigestSize]...),
		},
	}
	// LUKS1 stores cipher and mode apart; dm-crypt wants them joined. A
	// mode-less LUKS1 cipher does not exist, so an empty half is damage.
	if cipherName == "" || cipherMode == "" {
		return nil, fmt.Errorf("luks: LUKS1: empty cipher_name or cipher_mode")
	}
	h.Cipher = cipherName + "-" + cipherMode
	if err := parseLUKS1Keyslots(b, h); err != nil {
		return nil, fmt.Errorf("luks: LUKS1: %w", err)
	}
	return h, nil
}
