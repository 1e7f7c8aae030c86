package luks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// The LUKS2 JSON metadata, only as much of it as mapping the data needs.
// Numbers that LUKS2 keeps as strings (offsets and sizes, which may exceed
// 2^53) are strings here too and parsed by hand.
type jsonMetadata struct {
	Keyslots map[string]jsonKeyslot `json:"keyslots"`
	Tokens   map[string]skipped     `json:"tokens"`
	Segments map[string]jsonSegment `json:"segments"`
	Digests  map[string]jsonDigest  `json:"digests"`
	Config   *jsonConfig            `json:"config"`
}

type jsonKeyslot struct {
	Type    string `json:"type"`
	KeySize *int64 `json:"key_size"`
	Detail  jsonKeyslotDetail
}

// UnmarshalJSON decodes a keyslot twice over the same bytes: the fields
// every keyslot must have, and the details unlocking needs, which are not
// checked here (fillKeyslots passes over a keyslot it cannot use).
func (k *jsonKeyslot) UnmarshalJSON(b []byte) error {
	type plain jsonKeyslot
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if err := json.Unmarshal(b, &p.Detail); err != nil {
		p.Detail = jsonKeyslotDetail{}
	}
	*k = jsonKeyslot(p)
	return nil
}

type jsonSegment struct {
	Type       string         `json:"type"`
	Offset     string         `json:"offset"`
	Size       string         `json:"size"`
	IVTweak    *string        `json:"iv_tweak"`
	Encryption *string        `json:"encryption"`
	SectorSize *int64         `json:"sector_size"`
	Integrity  *jsonIntegrity `json:"integrity"`
	Flags      []string       `json:"flags"`
}

type jsonIntegrity struct {
	Type              string `json:"type"`
	JournalEncryption string `json:"journal_encryption"`
	JournalIntegrity  string `json:"journal_integrity"`
}

type jsonDigest struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations *int64   `json:"iterations"`
	Salt       string   `json:"salt"`
	Digest     string   `json:"digest"`
}

type jsonConfig struct {
	JSONSize     string            `json:"json_size"`
	KeyslotsSize string            `json:"keyslots_size"`
	Flags        []string          `json:"flags"`
	Requirements *jsonRequirements `json:"requirements"`
}

type jsonRequirements struct {
	Mandatory []string `json:"mandatory"`
}

// PBKDF2 digest limits from cryptsetup's luks2_digest_pbkdf2.c: a 32-byte
// salt and a digest of 20 bytes (SHA-1 size, LUKS1 heritage) up to 64
// (its buffer), further tied to the hash in VerifyKey.
const (
	digestSaltSize = 32
	digestMinSize  = 20
	digestMaxSize  = 64
)

// decodeJSONArea checks the JSON area the way cryptsetup's
// parse_and_validate_json does (text from the first byte, nothing but NULs
// after it) and fills h from it. Failures make this header copy invalid,
// so the other copy can still be used.
func decodeJSONArea(h *Header, area []byte) error {
	end := bytes.IndexByte(area, 0)
	if end < 0 {
		return errors.New("no NUL after the JSON text")
	}
	text := area[:end]
	if len(text) == 0 || text[0] != '{' {
		return errors.New("does not start with '{'")
	}
	for _, c := range area[end:] {
		if c != 0 {
			return errors.New("non-NUL bytes after the JSON text")
		}
	}
	if err := checkShape(text); err != nil {
		return err
	}
	var m jsonMetadata
	if err := json.Unmarshal(text, &m); err != nil {
		return err
	}
	return m.fill(h)
}

// numbered reports whether s is a non-empty run of decimal digits, the form
// LUKS2 uses for object keys and for numbers kept in strings.
func numbered(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseNumber parses a LUKS2 number kept in a string.
func parseNumber(s, field string) (uint64, error) {
	if !numbered(s) {
		return 0, fmt.Errorf("%s %q is not a decimal number", field, s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", field, s, err)
	}
	return v, nil
}

func (m *jsonMetadata) fill(h *Header) error {
	if m.Keyslots == nil || m.Tokens == nil || m.Segments == nil || m.Digests == nil || m.Config == nil {
		return errors.New("missing keyslots, tokens, segments, digests or config object")
	}
	if err := m.checkConfig(h.HeaderSize); err != nil {
		return err
	}
	for id, ks := range m.Keyslots {
		if !numbered(id) {
			return fmt.Errorf("keyslot id %q is not a number", id)
		}
		if ks.Type == "" || ks.KeySize == nil || *ks.KeySize < 0 || *ks.KeySize > math.MaxUint32 {
			return fmt.Errorf("keyslot %s: missing type or bad key_size", id)
		}
	}
	if len(m.Segments) == 0 {
		return errors.New("no segments")
	}
	for id, d := range m.Digests {
		if err := m.checkDigest(id, d); err != nil {
			return err
		}
	}
	for id, s := range m.Segments {
		if err := m.checkSegment(id, s); err != nil {
			return err
		}
	}
	seg, ok := m.Segments["0"]
	if !ok {
		return errors.New("no segment 0")
	}

	h.Segments = len(m.Segments)
	h.SegmentType = seg.Type
	h.Flags = m.Config.Flags
	if m.Config.Requirements != nil {
		h.Requirements = m.Config.Requirements.Mandatory
	}
	h.Offset, _ = parseNumber(seg.Offset, "offset") // checked by checkSegment
	if seg.Size == "dynamic" {
		h.Dynamic = true
	} else {
		h.Size, _ = parseNumber(seg.Size, "size")
	}
	// Other segment types have no encryption fields (Table refuses them),
	// but may still have a digest.
	if seg.Type == "crypt" {
		h.Cipher = *seg.Encryption
		h.SectorSize = int(*seg.SectorSize)
		h.IVTweak, _ = parseNumber(*seg.IVTweak, "iv_tweak")
		if seg.Integrity != nil {
			h.Integrity = seg.Integrity.Type
		}
	}
	return m.fillDigest(h)
}

func (m *jsonMetadata) checkConfig(hdrSize uint64) error {
	c := m.Config
	jsonSize, err := parseNumber(c.JSONSize, "config json_size")
	if err != nil {
		return err
	}
	if jsonSize != hdrSize-binHeaderSize {
		return fmt.Errorf("config json_size %d does not match hdr_size %d", jsonSize, hdrSize)
	}
	if _, err := parseNumber(c.KeyslotsSize, "config keyslots_size"); err != nil {
		return err
	}
	if c.Requirements != nil {
		for _, r := range c.Requirements.Mandatory {
			if !printable(r) {
				return fmt.Errorf("requirement %q has non-printable characters", r)
			}
		}
	}
	return nil
}

func (m *jsonMetadata) checkDigest(id string, d jsonDigest) error {
	if !numbered(id) {
		return fmt.Errorf("digest id %q is not a number", id)
	}
	if d.Type == "" || d.Keyslots == nil || d.Segments == nil {
		return fmt.Errorf("digest %s: missing type, keyslots or segments", id)
	}
	for _, k := range d.Keyslots {
		if _, ok := m.Keyslots[k]; !ok {
			return fmt.Errorf("digest %s: no keyslot %q", id, k)
		}
	}
	for _, s := range d.Segments {
		if _, ok := m.Segments[s]; !ok {
			return fmt.Errorf("digest %s: no segment %q", id, s)
		}
	}
	return nil
}

func (m *jsonMetadata) checkSegment(id string, s jsonSegment) error {
	if !numbered(id) {
		return fmt.Errorf("segment id %q is not a number", id)
	}
	if s.Type == "" {
		return fmt.Errorf("segment %s: no type", id)
	}
	off, err := parseNumber(s.Offset, "segment "+id+" offset")
	if err != nil {
		return err
	}
	var size uint64
	if s.Size != "dynamic" {
		if size, err = parseNumber(s.Size, "segment "+id+" size"); err != nil {
			return err
		}
		if size == 0 {
			return fmt.Errorf("segment %s: size 0", id)
		}
		if off > math.MaxUint64-size {
			return fmt.Errorf("segment %s: offset+size overflows", id)
		}
	}
	// device-mapper works in 512-byte sectors.
	if off%512 != 0 || size%512 != 0 {
		return fmt.Errorf("segment %s: offset %d or size %d not a multiple of 512", id, off, size)
	}
	if s.Type != "crypt" {
		return nil
	}
	if s.IVTweak == nil || s.Encryption == nil || *s.Encryption == "" || s.SectorSize == nil {
		return fmt.Errorf("segment %s: crypt segment without iv_tweak, encryption or sector_size", id)
	}
	if _, err := parseNumber(*s.IVTweak, "segment "+id+" iv_tweak"); err != nil {
		return err
	}
	if !printable(*s.Encryption) {
		return fmt.Errorf("segment %s: encryption %q has non-printable characters", id, *s.Encryption)
	}
	ss := *s.SectorSize
	if ss <= 0 || ss > math.MaxUint32 || ss%512 != 0 {
		return fmt.Errorf("segment %s: bad sector_size %d", id, ss)
	}
	if size%uint64(ss) != 0 {
		return fmt.Errorf("segment %s: size %d not a multiple of sector_size %d", id, size, ss)
	}
	if in := s.Integrity; in != nil && (in.Type == "" || in.JournalEncryption == "" || in.JournalIntegrity == "") {
		return fmt.Errorf("segment %s: incomplete integrity object", id)
	}
	if in := s.Integrity; in != nil && !printable(in.Type) {
		return fmt.Errorf("segment %s: integrity type %q has non-printable characters", id, in.Type)
	}
	for _, d := range m.Digests {
		for _, ds := range d.Segments {
			if ds == id {
				return nil
			}
		}
	}
	return fmt.Errorf("crypt segment %s has no digest", id)
}

// fillDigest finds segment 0's digest, if it has one, and the key size of
// the keyslots that unlock it.
func (m *jsonMetadata) fillDigest(h *Header) error {
	var ids []string
	for id, d := range m.Digests {
		for _, s := range d.Segments {
			if s == "0" {
				ids = append(ids, id)
				break
			}
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return nil // only a crypt segment must have one: checkSegment
	}
	if len(ids) != 1 {
		// cryptsetup would take whichever its JSON library lists first;
		// a choice that depends on that is not one to make silently.
		return fmt.Errorf("segment 0 is bound to %d digests %v, want 1", len(ids), ids)
	}
	d := m.Digests[ids[0]]
	h.Digest.Type = d.Type
	for _, k := range d.Keyslots {
		ks := int(*m.Keyslots[k].KeySize)
		if h.KeySize != 0 && ks != h.KeySize {
			return fmt.Errorf("keyslots of digest %s disagree on key_size (%d, %d)", ids[0], h.KeySize, ks)
		}
		h.KeySize = ks
	}
	m.fillKeyslots(h, d.Keyslots)
	if len(d.Keyslots) > 0 && (h.KeySize <= 0 || h.KeySize > maxKeySize) {
		return fmt.Errorf("key_size %d out of range 1..%d", h.KeySize, maxKeySize)
	}
	if d.Type != "pbkdf2" {
		// Kept for VerifyKey to refuse by name.
		return nil
	}
	if d.Iterations == nil || *d.Iterations < 1 || *d.Iterations > math.MaxUint32 {
		return fmt.Errorf("digest %s: bad iterations", ids[0])
	}
	if !printable(d.Hash) || d.Hash == "" {
		return fmt.Errorf("digest %s: bad hash %q", ids[0], d.Hash)
	}
	salt, err := base64.StdEncoding.DecodeString(d.Salt)
	if err != nil || len(salt) != digestSaltSize {
		return fmt.Errorf("digest %s: salt is not %d bytes of base64", ids[0], digestSaltSize)
	}
	value, err := base64.StdEncoding.DecodeString(d.Digest)
	if err != nil || len(value) < digestMinSize || len(value) > digestMaxSize {
		return fmt.Errorf("digest %s: digest is not %d..%d bytes of base64", ids[0], digestMinSize, digestMaxSize)
	}
	h.Digest.Hash = d.Hash
	h.Digest.Iterations = int(*d.Iterations)
	h.Digest.Salt = salt
	h.Digest.Value = value
	return nil
}
