package luks

import (
	"encoding/base64"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Keyslot is one keyslot as the header describes it: how a passphrase
// becomes the key of the keyslot area, where that area is and how it is
// encrypted, and how the volume key was split across it. Only the first
// kernel unlocks keyslots (pkg/keyslot); the crash kernel never reads them.
type Keyslot struct {
	// ID is the keyslot number (0-7 for LUKS1, 0-31 for LUKS2).
	ID int
	// Priority orders LUKS2 keyslots: 2 high, 1 normal, 0 ignore (not tried
	// without naming it). LUKS1 keyslots are all normal.
	Priority int
	// KeySize is the volume key size the keyslot holds, in bytes.
	KeySize int
	// KDF derives the area key from a passphrase.
	KDF KDF
	// AreaOffset and AreaSize locate the encrypted key material, in bytes.
	AreaOffset, AreaSize uint64
	// AreaCipher is the area's dm-crypt cipher spec (e.g. aes-xts-plain64),
	// AreaKeySize its key size in bytes.
	AreaCipher  string
	AreaKeySize int
	// Stripes and AFHash describe the anti-forensic split (LUKS AF).
	Stripes int
	AFHash  string
}

// KDF is a keyslot's key derivation: PBKDF2 (Hash, Iterations) or Argon2i
// / Argon2id (Time, MemoryKiB, Threads).
type KDF struct {
	Type       string // "pbkdf2", "argon2i" or "argon2id"
	Hash       string
	Iterations int
	Time       int
	MemoryKiB  int
	Threads    int
	Salt       []byte
}

// LUKS1 keyslot descriptors follow the phdr's fixed fields.
const (
	luks1OffKeyslots   = 208
	luks1KeyslotSize   = 48
	luks1Keyslots      = 8
	luks1KeyslotActive = 0x00AC71F3
	luks1MaxStripes    = 1 << 16 // cryptsetup writes 4000
)

// parseLUKS1Keyslots reads the active keyslots of a LUKS1 phdr.
func parseLUKS1Keyslots(b []byte, h *Header) error {
	for i := range luks1Keyslots {
		ks := b[luks1OffKeyslots+i*luks1KeyslotSize:]
		if be32(ks) != luks1KeyslotActive {
			continue
		}
		iter, off, stripes := be32(ks[4:]), be32(ks[40:]), be32(ks[44:])
		if iter == 0 || stripes == 0 || stripes > luks1MaxStripes {
			return fmt.Errorf("keyslot %d: bad iterations %d or stripes %d", i, iter, stripes)
		}
		h.Keyslots = append(h.Keyslots, Keyslot{
			ID: i, Priority: 1, KeySize: h.KeySize,
			KDF:        KDF{Type: "pbkdf2", Hash: h.Digest.Hash, Iterations: int(iter), Salt: append([]byte(nil), ks[8:40]...)},
			AreaOffset: uint64(off) * 512,
			// The area holds KeySize*stripes bytes, rounded up to sectors.
			AreaSize:    (uint64(h.KeySize)*uint64(stripes) + 511) / 512 * 512,
			AreaCipher:  h.Cipher,
			AreaKeySize: h.KeySize,
			Stripes:     int(stripes),
			AFHash:      h.Digest.Hash,
		})
	}
	return nil
}

// LUKS2 keyslot JSON, as far as unlocking needs it.
type jsonKeyslotDetail struct {
	Priority *int64 `json:"priority"`
	AF       *struct {
		Type    string `json:"type"`
		Stripes int64  `json:"stripes"`
		Hash    string `json:"hash"`
	} `json:"af"`
	Area *struct {
		Type       string `json:"type"`
		Offset     string `json:"offset"`
		Size       string `json:"size"`
		Encryption string `json:"encryption"`
		KeySize    int64  `json:"key_size"`
	} `json:"area"`
	KDF *struct {
		Type       string `json:"type"`
		Hash       string `json:"hash"`
		Iterations int64  `json:"iterations"`
		Time       int64  `json:"time"`
		Memory     int64  `json:"memory"`
		CPUs       int64  `json:"cpus"`
		Salt       string `json:"salt"`
	} `json:"kdf"`
}

// fillKeyslots records the LUKS2 keyslots of type luks2 bound to segment
// 0's digest. A keyslot this package cannot describe is left out (it is
// still counted by cryptsetup; ukdump then cannot unlock with it), so one
// odd keyslot never stops the others from working.
func (m *jsonMetadata) fillKeyslots(h *Header, digestKeyslots []string) {
	for _, id := range digestKeyslots {
		ks := m.Keyslots[id]
		n, err := strconv.Atoi(id)
		if err != nil || ks.Type != "luks2" || ks.Detail.AF == nil || ks.Detail.Area == nil || ks.Detail.KDF == nil {
			continue
		}
		d := ks.Detail
		k := Keyslot{ID: n, Priority: 1, KeySize: int(*ks.KeySize), Stripes: int(d.AF.Stripes), AFHash: d.AF.Hash,
			AreaCipher: d.Area.Encryption, AreaKeySize: int(d.Area.KeySize)}
		if d.Priority != nil {
			k.Priority = int(*d.Priority)
		}
		var err1, err2 error
		k.AreaOffset, err1 = parseNumber(d.Area.Offset, "area offset")
		k.AreaSize, err2 = parseNumber(d.Area.Size, "area size")
		salt, err3 := base64.StdEncoding.DecodeString(d.KDF.Salt)
		if err1 != nil || err2 != nil || err3 != nil || d.AF.Type != "luks1" || d.Area.Type != "raw" ||
			k.Stripes < 1 || k.Stripes > luks1MaxStripes || k.AreaKeySize < 1 || k.AreaKeySize > maxKeySize ||
			!printable(k.AreaCipher) || !printable(k.AFHash) || k.AreaOffset > math.MaxInt64-k.AreaSize ||
			k.AreaSize < uint64(k.KeySize)*uint64(k.Stripes) {
			continue
		}
		k.KDF = KDF{Type: d.KDF.Type, Hash: d.KDF.Hash, Salt: salt}
		switch d.KDF.Type {
		case "pbkdf2":
			k.KDF.Iterations = int(min(max(d.KDF.Iterations, 0), math.MaxUint32))
		case "argon2i", "argon2id":
			k.KDF.Time = int(min(max(d.KDF.Time, 0), math.MaxUint32))
			k.KDF.MemoryKiB = int(min(max(d.KDF.Memory, 0), math.MaxUint32))
			k.KDF.Threads = int(min(max(d.KDF.CPUs, 0), 255))
		default:
			continue
		}
		h.Keyslots = append(h.Keyslots, k)
	}
	sort.Slice(h.Keyslots, func(i, j int) bool { return h.Keyslots[i].ID < h.Keyslots[j].ID })
}
