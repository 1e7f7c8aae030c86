package vmcore

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// VMCOREINFO is the parsed text of the kernel's VMCOREINFO note: one
// KEY=VALUE per line, such as OSRELEASE=6.1.0, PAGESIZE=4096,
// SYMBOL(init_uts_ns)=ffffffff963f9b60, SIZE(page)=64,
// OFFSET(page.flags)=0, LENGTH(zone.free_area)=11, NUMBER(PG_lru)=4,
// KERNELOFFSET=13800000 and CRASHTIME=1795666976.
//
// All values are validated when parsed: SYMBOL values and KERNELOFFSET are
// hexadecimal addresses, SIZE, OFFSET and LENGTH are decimal, NUMBER is
// decimal (possibly negative) or 0x-prefixed hexadecimal. A VMCOREINFO is
// immutable and safe for concurrent use.
type VMCOREINFO struct {
	raw     map[string]string
	keys    []string
	symbols map[string]uint64
	sizes   map[string]int64
	offsets map[string]int64
	lengths map[string]int64
	numbers map[string]int64
}

// ParseVMCOREINFO parses the payload of a VMCOREINFO note. Trailing NUL
// bytes are ignored. A non-empty line without '=' or a malformed value of a
// known kind (SYMBOL, SIZE, OFFSET, LENGTH, NUMBER, PAGESIZE, CRASHTIME,
// KERNELOFFSET) is a *FormatError naming the line (its Off is the line's
// offset in data).
func ParseVMCOREINFO(data []byte) (*VMCOREINFO, error) {
	data = bytes.TrimRight(data, "\x00")
	v := &VMCOREINFO{
		raw:     make(map[string]string),
		symbols: make(map[string]uint64),
		sizes:   make(map[string]int64),
		offsets: make(map[string]int64),
		lengths: make(map[string]int64),
		numbers: make(map[string]int64),
	}
	off := 0
	for i, line := range strings.Split(string(data), "\n") {
		lineOff := int64(off)
		off += len(line) + 1
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			return nil, formatError(lineOff, "vmcoreinfo line %d: %q: not KEY=VALUE", i+1, truncate(line))
		}
		if err := v.add(key, val); err != nil {
			return nil, &FormatError{Off: lineOff, Msg: fmt.Sprintf("vmcoreinfo line %d", i+1), Err: err}
		}
	}
	return v, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// kindName splits "SYMBOL(x)" into "SYMBOL", "x".
func kindName(key string) (kind, name string, ok bool) {
	open := strings.IndexByte(key, '(')
	if open <= 0 || !strings.HasSuffix(key, ")") || open+1 >= len(key)-1 {
		return "", "", false
	}
	return key[:open], key[open+1 : len(key)-1], true
}

func (v *VMCOREINFO) add(key, val string) error {
	if _, dup := v.raw[key]; !dup {
		v.keys = append(v.keys, key)
	}
	v.raw[key] = val
	switch key {
	case "PAGESIZE", "CRASHTIME":
		if _, err := strconv.ParseInt(val, 10, 64); err != nil {
			return fmt.Errorf("%s=%q: not a decimal number", key, truncate(val))
		}
		return nil
	case "KERNELOFFSET":
		if _, err := strconv.ParseUint(val, 16, 64); err != nil {
			return fmt.Errorf("%s=%q: not a hexadecimal number", key, truncate(val))
		}
		return nil
	}
	kind, name, ok := kindName(key)
	if !ok {
		return nil // other keys (OSRELEASE, BUILD-ID, ...) are kept raw
	}
	switch kind {
	case "SYMBOL":
		n, err := strconv.ParseUint(val, 16, 64)
		if err != nil {
			return fmt.Errorf("%s=%q: not a hexadecimal address", key, truncate(val))
		}
		v.symbols[name] = n
	case "SIZE", "OFFSET", "LENGTH":
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return fmt.Errorf("%s=%q: not a decimal number", key, truncate(val))
		}
		switch kind {
		case "SIZE":
			v.sizes[name] = n
		case "OFFSET":
			v.offsets[name] = n
		default:
			v.lengths[name] = n
		}
	case "NUMBER":
		n, err := parseNumber(val)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", key, truncate(val), err)
		}
		v.numbers[name] = n
	}
	return nil
}

// parseNumber parses a NUMBER() value: decimal, possibly negative, or
// 0x-prefixed hexadecimal; values above MaxInt64 keep their 64-bit pattern.
func parseNumber(s string) (int64, error) {
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		u, err := strconv.ParseUint(h, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("not a hexadecimal number")
		}
		return int64(u), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	u, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number")
	}
	return int64(u), nil
}

// Keys returns the keys in the order they appear in the note.
func (v *VMCOREINFO) Keys() []string { return append([]string(nil), v.keys...) }

// Raw returns a copy of all KEY=VALUE pairs as text.
func (v *VMCOREINFO) Raw() map[string]string {
	m := make(map[string]string, len(v.raw))
	for k, val := range v.raw {
		m[k] = val
	}
	return m
}

// Get returns the raw text value of key, e.g. Get("OSRELEASE").
func (v *VMCOREINFO) Get(key string) (string, bool) {
	s, ok := v.raw[key]
	return s, ok
}

// OSRelease returns OSRELEASE (the kernel's uname -r), or "".
func (v *VMCOREINFO) OSRelease() string { return v.raw["OSRELEASE"] }

// BuildID returns BUILD-ID (hexadecimal text), or "".
func (v *VMCOREINFO) BuildID() string { return v.raw["BUILD-ID"] }

// PageSize returns PAGESIZE.
func (v *VMCOREINFO) PageSize() (int, bool) {
	n, err := strconv.ParseInt(v.raw["PAGESIZE"], 10, 64)
	if err != nil || n <= 0 || n > 1<<30 {
		return 0, false
	}
	return int(n), true
}

// CrashTime returns CRASHTIME, the time of the crash (seconds precision).
func (v *VMCOREINFO) CrashTime() (time.Time, bool) {
	n, err := strconv.ParseInt(v.raw["CRASHTIME"], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// Symbol returns SYMBOL(name): the address of a kernel symbol (for arrays
// exported with VMCOREINFO_SYMBOL_ARRAY, the value of the pointer).
func (v *VMCOREINFO) Symbol(name string) (uint64, bool) {
	n, ok := v.symbols[name]
	return n, ok
}

// Size returns SIZE(name), the size of a kernel type in bytes.
func (v *VMCOREINFO) Size(name string) (int64, bool) {
	n, ok := v.sizes[name]
	return n, ok
}

// Offset returns OFFSET(name) for name "struct.field", in bytes.
func (v *VMCOREINFO) Offset(name string) (int64, bool) {
	n, ok := v.offsets[name]
	return n, ok
}

// Length returns LENGTH(name), the number of elements of an array.
func (v *VMCOREINFO) Length(name string) (int64, bool) {
	n, ok := v.lengths[name]
	return n, ok
}

// Number returns NUMBER(name). Values written in hexadecimal keep their
// 64-bit pattern (convert with uint64()).
func (v *VMCOREINFO) Number(name string) (int64, bool) {
	n, ok := v.numbers[name]
	return n, ok
}

// KernelOffset returns KERNELOFFSET, the KASLR offset of the kernel text.
func (v *VMCOREINFO) KernelOffset() (uint64, bool) {
	n, err := strconv.ParseUint(v.raw["KERNELOFFSET"], 16, 64)
	return n, err == nil
}

// PhysBase returns NUMBER(phys_base) as an address offset (it may be
// negative in the note; the result is its two's complement).
func (v *VMCOREINFO) PhysBase() (uint64, bool) {
	n, ok := v.numbers["phys_base"]
	return uint64(n), ok
}

// String returns the note text with the keys in their original order.
func (v *VMCOREINFO) String() string {
	var b strings.Builder
	for _, k := range v.keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v.raw[k])
		b.WriteByte('\n')
	}
	return b.String()
}
