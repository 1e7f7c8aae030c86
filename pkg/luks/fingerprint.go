package luks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Fingerprint identifies what of a header the crash kernel relies on: the
// key digest (hash, iterations, salt, value) and segment 0's mapping
// (cipher, key size, offset, size, sector size, flags, requirements). The
// loader records it at load time and the crash kernel refuses a header
// whose fingerprint differs, before it computes anything: a header damaged
// or swapped since the load (one asking for 2^32 digest iterations, say)
// never gets to run. Keyslots, tokens and the seqid are left out, so adding
// a passphrase with cryptsetup does not invalidate a loaded crash kernel;
// the volume key is the same.
func (h *Header) Fingerprint() string {
	s := sha256.New()
	d := h.Digest
	fmt.Fprintf(s, "v%d|%q|%q|%d|%d|%d|%t|%d|%q|%q|%q|%d|%q|",
		h.Version, h.UUID, h.Cipher, h.KeySize, h.Offset, h.Size, h.Dynamic, h.SectorSize,
		h.Integrity, h.Flags, h.Requirements, h.Segments, h.SegmentType)
	fmt.Fprintf(s, "%q|%q|%d|%x|%x", d.Type, d.Hash, d.Iterations, d.Salt, d.Value)
	return "sha256:" + hex.EncodeToString(s.Sum(nil))
}
