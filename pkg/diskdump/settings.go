package diskdump

import (
	"fmt"

	"github.com/ukdump/ukdump/internal/words"
)

// The settings of a dump that ukdump.conf, the CLI and the collector share:
// one list of codecs and one of formats, so that validation, help and docs
// cannot drift apart.

// Compression selects how the Writer compresses pages. It reads and writes
// itself as its name ("snappy"), in JSON and in flags.
type Compression int

// Supported compressions.
const (
	None   Compression = iota // pages stored raw
	Zlib                      // zlib level 1 (makedumpfile -c)
	LZO                       // LZO1X (makedumpfile -l)
	Snappy                    // snappy raw block (makedumpfile -p)
	Zstd                      // zstd frame (makedumpfile -z)
)

// Compressions lists the codecs in the order ukdump recommends them:
// snappy is the fastest for the size, lzo what every makedumpfile build
// reads, zstd the smallest.
func Compressions() []Compression { return []Compression{Snappy, LZO, Zstd, Zlib, None} }

// CompressionNames is "snappy, lzo, zstd, zlib or none".
func CompressionNames() string { return words.Or(Compressions()) }

// String returns the codec name.
func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Zlib:
		return "zlib"
	case LZO:
		return "lzo"
	case Snappy:
		return "snappy"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// flag returns the status / page descriptor flag of c.
func (c Compression) flag() uint32 {
	switch c {
	case Zlib:
		return FlagZlib
	case LZO:
		return FlagLZO
	case Snappy:
		return FlagSnappy
	case Zstd:
		return FlagZstd
	}
	return 0
}

// ParseCompression maps a name of Compressions to a Compression.
func ParseCompression(s string) (Compression, error) {
	for _, c := range Compressions() {
		if c.String() == s {
			return c, nil
		}
	}
	return None, fmt.Errorf("compression %q is not %s", s, CompressionNames())
}

// MarshalText writes the codec's name.
func (c Compression) MarshalText() ([]byte, error) {
	if _, err := ParseCompression(c.String()); err != nil {
		return nil, err
	}
	return []byte(c.String()), nil
}

// UnmarshalText reads a codec's name.
func (c *Compression) UnmarshalText(b []byte) error {
	v, err := ParseCompression(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Format is the file format of a dump.
type Format string

// The formats the collector writes.
const (
	// KdumpFormat is makedumpfile's kdump-compressed format: bitmaps and
	// per-page compression, read by crash, makedumpfile, libkdumpfile and drgn.
	KdumpFormat Format = "kdump"
	// ELFFormat is an ELF core like /proc/vmcore with the excluded pages
	// left out (makedumpfile -E).
	ELFFormat Format = "elf"
)

// Formats lists the formats, the default first.
func Formats() []Format { return []Format{KdumpFormat, ELFFormat} }

// FormatNames is "kdump or elf".
func FormatNames() string { return words.Or(Formats()) }

// ParseFormat maps a name of Formats to a Format.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats() {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("format %q is not %s", s, FormatNames())
}
