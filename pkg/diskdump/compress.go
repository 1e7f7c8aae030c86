package diskdump

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"

	"github.com/ukdump/ukdump/internal/zeropage"
)

// PageEncoder compresses single pages with one codec, for a Writer: the
// Writer has its own (WritePage); a caller that compresses pages on
// several goroutines gives each one its own and hands the results to
// Writer.WriteEncoded in order. Not safe for concurrent use.
type PageEncoder struct {
	c    Compression
	zbuf bytes.Buffer
	zw   *zlib.Writer
	zstd *zstd.Encoder
	lzo  *lzoEncoder
	out  []byte
	room int // what EncodeInto needs; 0: it copies
}

// NewPageEncoder returns an encoder of c for pageSize-byte pages.
func NewPageEncoder(c Compression, pageSize int) (*PageEncoder, error) {
	e := &PageEncoder{c: c}
	switch c {
	case None:
	case Zlib:
		zw, err := zlib.NewWriterLevel(&e.zbuf, 1)
		if err != nil {
			return nil, fmt.Errorf("diskdump: zlib writer: %w", err)
		}
		e.zw = zw
	case LZO:
		e.lzo = new(lzoEncoder)
		e.out = make([]byte, 0, lzoMaxOut(pageSize))
		e.room = lzoMaxOut(pageSize)
	case Snappy:
		e.out = make([]byte, s2.MaxEncodedLen(pageSize))
		e.room = len(e.out)
	case Zstd:
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false),
			zstd.WithWindowSize(max(zstd.MinWindowSize, pageSize)))
		if err != nil {
			return nil, fmt.Errorf("diskdump: zstd encoder: %w", err)
		}
		e.zstd = enc
		e.out = make([]byte, 0, 2*pageSize)
	default:
		return nil, fmt.Errorf("diskdump: compression %v not supported by the writer", c)
	}
	return e, nil
}

// Encoded is a page as a Writer stores it.
type Encoded struct {
	// Zero: the page is all zeros; the dump points it at one stored zero
	// page, and Data is empty.
	Zero bool
	// Data and Flags are the stored bytes and the page descriptor flags:
	// the raw page with flags 0 when compression does not make it smaller.
	Data  []byte
	Flags uint32
}

// Encode returns how page is stored. Data is valid until the next call;
// it may be page itself.
func (e *PageEncoder) Encode(page []byte) (Encoded, error) { return e.store(page, e.out) }

// Room is how many bytes EncodeInto needs to compress into the caller's
// buffer; 0 when the codec cannot (it copies).
func (e *PageEncoder) Room() int { return e.room }

// EncodeInto is Encode, compressing into room (at least Room() bytes)
// where the codec can, so that a caller collecting the pages in a buffer
// need not copy them there: the compressed Data is then room[:len(Data)].
// That copy was 5% of the dump's CPU time in the crash kernel. The fast
// codecs (lzo, snappy) write into room; the others, and a room too
// small, are Encode.
func (e *PageEncoder) EncodeInto(page, room []byte) (Encoded, error) {
	if e.room == 0 || len(room) < e.room {
		return e.Encode(page)
	}
	return e.store(page, room[:e.room:e.room])
}

// store is Encode, lzo and snappy compressing into dst (whose capacity is
// Room).
func (e *PageEncoder) store(page, dst []byte) (Encoded, error) {
	if zeropage.Is(page) {
		return Encoded{Zero: true}, nil
	}
	out, flags, err := e.encode(page, dst)
	return Encoded{Data: out, Flags: flags}, err
}

// inPlace reports whether p starts at the first byte after b's length,
// in b's capacity: an EncodeInto result compressed into b's free part.
func inPlace(b, p []byte) bool {
	return len(p) > 0 && len(b) < cap(b) && &b[:len(b)+1][len(b)] == &p[0]
}

// encode compresses page, lzo and snappy into dst (e.out, or the
// caller's room). It returns the bytes to store and the page descriptor
// flags: the raw page with flags 0 when compression does not make it
// smaller. The result is valid until the next call.
func (e *PageEncoder) encode(page, dst []byte) ([]byte, uint32, error) {
	var out []byte
	switch e.c {
	case Zlib:
		e.zbuf.Reset()
		e.zw.Reset(&e.zbuf)
		if _, err := e.zw.Write(page); err != nil {
			return nil, 0, fmt.Errorf("diskdump: zlib: %w", err)
		}
		if err := e.zw.Close(); err != nil {
			return nil, 0, fmt.Errorf("diskdump: zlib: %w", err)
		}
		out = e.zbuf.Bytes()
	case LZO:
		out = e.lzo.encode(dst[:0], page, len(page))
		if out == nil {
			return page, 0, nil
		}
	case Snappy:
		out = s2.EncodeSnappy(dst[:cap(dst)], page)
	case Zstd:
		out = e.zstd.EncodeAll(page, e.out[:0])
		e.out = out[:0]
	default:
		return page, 0, nil
	}
	if len(out) >= len(page) {
		return page, 0, nil
	}
	return out, e.c.flag(), nil
}

// Close releases the codec's resources.
func (e *PageEncoder) Close() {
	if e.zstd != nil {
		_ = e.zstd.Close()
	}
}

// pageDecoder decompresses pages of any codec. Not safe for concurrent use.
type pageDecoder struct {
	zr   io.ReadCloser
	zsrc bytes.Reader
	zstd *zstd.Decoder
}

var errDecode = errors.New("diskdump: corrupt compressed page")

// decode decompresses src, stored with descriptor flags, into dst whose
// length is the page size.
func (d *pageDecoder) decode(dst, src []byte, flags uint32) error {
	var n int
	switch {
	case flags&FlagZlib != 0:
		d.zsrc.Reset(src)
		if d.zr == nil {
			zr, err := zlib.NewReader(&d.zsrc)
			if err != nil {
				return fmt.Errorf("%w: zlib: %w", errDecode, err)
			}
			d.zr = zr
		} else if err := d.zr.(zlib.Resetter).Reset(&d.zsrc, nil); err != nil {
			return fmt.Errorf("%w: zlib: %w", errDecode, err)
		}
		m, err := io.ReadFull(d.zr, dst)
		if err != nil {
			return fmt.Errorf("%w: zlib: %w", errDecode, err)
		}
		var one [1]byte
		if k, _ := d.zr.Read(one[:]); k != 0 {
			return fmt.Errorf("%w: zlib: more than a page", errDecode)
		}
		n = m
	case flags&FlagLZO != 0:
		m, err := lzo1xDecompress(dst, src)
		if err != nil {
			return fmt.Errorf("%w: lzo: %w", errDecode, err)
		}
		n = m
	case flags&FlagSnappy != 0:
		l, err := s2.DecodedLen(src)
		if err != nil || l != len(dst) {
			return fmt.Errorf("%w: snappy: length %d (%v)", errDecode, l, err)
		}
		if _, err := s2.Decode(dst, src); err != nil {
			return fmt.Errorf("%w: snappy: %w", errDecode, err)
		}
		n = l
	case flags&FlagZstd != 0:
		if d.zstd == nil {
			zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderMaxMemory(uint64(4*len(dst))+1<<16),
				zstd.WithDecodeAllCapLimit(true))
			if err != nil {
				return fmt.Errorf("diskdump: zstd decoder: %w", err)
			}
			d.zstd = zd
		}
		out, err := d.zstd.DecodeAll(src, dst[:0:len(dst)])
		if err != nil {
			return fmt.Errorf("%w: zstd: %w", errDecode, err)
		}
		n = len(out)
		if n > 0 && &out[0] != &dst[0] {
			copy(dst, out)
		}
	default:
		if len(src) != len(dst) {
			return fmt.Errorf("%w: raw page of %d bytes", errDecode, len(src))
		}
		copy(dst, src)
		n = len(src)
	}
	if n != len(dst) {
		return fmt.Errorf("%w: decompressed %d bytes, want %d", errDecode, n, len(dst))
	}
	return nil
}

func (d *pageDecoder) close() {
	if d.zstd != nil {
		d.zstd.Close()
	}
}
