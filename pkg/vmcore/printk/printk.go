// Package printk reads the kernel log of a crashed Linux kernel (5.10 and
// later: the lockless printk ring buffer) from its memory, as described by
// VMCOREINFO (SYMBOL(prb) and the SIZE/OFFSET entries of printk_ringbuffer,
// prb_desc_ring, prb_data_ring, prb_desc, prb_data_blk_lpos, printk_info and
// atomic_long_t), and formats it like `makedumpfile --dump-dmesg`.
//
// Memory use is bounded: descriptors and texts are read one record at a
// time, whatever the size of the ring buffer. A corrupt ring buffer or
// inconsistent VMCOREINFO is an error wrapping a *vmcore.FormatError, as in
// package vmcore.
package printk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/ukdump/ukdump/pkg/vmcore"
)

// Memory reads kernel virtual memory; *vmcore.Translator implements it.
type Memory interface {
	ReadVirt(vaddr uint64, buf []byte) error
}

// Record is one kernel log record.
type Record struct {
	Seq       uint64 // sequence number
	TimeNS    uint64 // printk_info.ts_nsec: nanoseconds since boot
	CallerID  uint32 // printk_info.caller_id: 0x80000000|cpu or a thread id
	HasCaller bool   // the kernel exports OFFSET(printk_info.caller_id)
	Text      []byte // the message, without a trailing newline; valid until the callback returns
}

// Descriptor states (kernel/printk/printk_ringbuffer.h).
const (
	descCommitted = 1
	descFinalized = 2
	descFlagShift = 62
	descIDMask    = 1<<descFlagShift - 1
	maxCountBits  = 30 // descriptors in the ring: 1<<count_bits
	maxSizeBits   = 40 // bytes of the text data ring: 1<<size_bits
)

// layout holds the VMCOREINFO entries the ring buffer needs.
type layout struct {
	prb                                           uint64
	rbDescRing, rbTextRing                        uint64
	drCountBits, drDescs, drInfos, drHead, drTail uint64
	descSize, descState, descText                 uint64
	lposBegin, lposNext                           uint64
	infoSize, infoSeq, infoTS, infoLen            uint64
	infoCaller                                    int64
	dataSizeBits, dataData                        uint64
	counter                                       uint64
}

func newLayout(info *vmcore.VMCOREINFO) (*layout, error) {
	if info == nil {
		return nil, errors.New("printk: no VMCOREINFO")
	}
	var missing []string
	sym := func(name string) uint64 {
		v, ok := info.Symbol(name)
		if !ok {
			missing = append(missing, "SYMBOL("+name+")")
		}
		return v
	}
	get := func(kind string, f func(string) (int64, bool), name string) uint64 {
		v, ok := f(name)
		if !ok || v < 0 || v > 1<<16 {
			missing = append(missing, kind+"("+name+")")
			return 0
		}
		return uint64(v)
	}
	off := func(name string) uint64 { return get("OFFSET", info.Offset, name) }
	size := func(name string) uint64 { return get("SIZE", info.Size, name) }
	l := &layout{
		prb:          sym("prb"),
		rbDescRing:   off("printk_ringbuffer.desc_ring"),
		rbTextRing:   off("printk_ringbuffer.text_data_ring"),
		drCountBits:  off("prb_desc_ring.count_bits"),
		drDescs:      off("prb_desc_ring.descs"),
		drInfos:      off("prb_desc_ring.infos"),
		drHead:       off("prb_desc_ring.head_id"),
		drTail:       off("prb_desc_ring.tail_id"),
		descSize:     size("prb_desc"),
		descState:    off("prb_desc.state_var"),
		descText:     off("prb_desc.text_blk_lpos"),
		lposBegin:    off("prb_data_blk_lpos.begin"),
		lposNext:     off("prb_data_blk_lpos.next"),
		infoSize:     size("printk_info"),
		infoSeq:      off("printk_info.seq"),
		infoTS:       off("printk_info.ts_nsec"),
		infoLen:      off("printk_info.text_len"),
		dataSizeBits: off("prb_data_ring.size_bits"),
		dataData:     off("prb_data_ring.data"),
		counter:      off("atomic_long_t.counter"),
		infoCaller:   -1,
	}
	if len(missing) > 0 {
		if _, ok := info.Symbol("log_buf"); ok && missing[0] == "SYMBOL(prb)" {
			return nil, errors.New("printk: kernel log of kernels before 5.10 (log_buf) is not supported")
		}
		return nil, fmt.Errorf("printk: VMCOREINFO lacks %v", missing)
	}
	if v, ok := info.Offset("printk_info.caller_id"); ok && v >= 0 && uint64(v)+4 <= l.infoSize {
		l.infoCaller = v
	}
	if l.descState+l.counter+8 > l.descSize || l.descText+l.lposBegin+8 > l.descSize || l.descText+l.lposNext+8 > l.descSize ||
		l.infoSeq+8 > l.infoSize || l.infoTS+8 > l.infoSize || l.infoLen+2 > l.infoSize {
		return nil, &vmcore.FormatError{Off: -1, Msg: "printk: inconsistent VMCOREINFO: field offsets beyond struct sizes"}
	}
	return l, nil
}

// ring is the state of one ring buffer read.
type ring struct {
	l                *layout
	mem              Memory
	count            uint64 // descriptors
	descs, infos     uint64
	dataSize, data   uint64
	head, tail       uint64
	desc, info, text []byte
}

func u64(b []byte, off uint64) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func openRing(mem Memory, info *vmcore.VMCOREINFO) (*ring, error) {
	l, err := newLayout(info)
	if err != nil {
		return nil, err
	}
	var p [8]byte
	if err := mem.ReadVirt(l.prb, p[:]); err != nil {
		return nil, fmt.Errorf("printk: reading prb: %w", err)
	}
	rb := binary.LittleEndian.Uint64(p[:])
	// The fields read from struct printk_ringbuffer.
	read := func(off uint64, n int) (uint64, error) {
		var b [8]byte
		if err := mem.ReadVirt(rb+off, b[:n]); err != nil {
			return 0, fmt.Errorf("printk: reading printk_ringbuffer at %#x: %w", rb, err)
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	r := &ring{l: l, mem: mem}
	dr, tr := l.rbDescRing, l.rbTextRing
	fields := []struct {
		dst *uint64
		off uint64
		n   int
	}{
		{&r.count, dr + l.drCountBits, 4}, {&r.descs, dr + l.drDescs, 8}, {&r.infos, dr + l.drInfos, 8},
		{&r.head, dr + l.drHead + l.counter, 8}, {&r.tail, dr + l.drTail + l.counter, 8},
		{&r.dataSize, tr + l.dataSizeBits, 4}, {&r.data, tr + l.dataData, 8},
	}
	for _, f := range fields {
		if *f.dst, err = read(f.off, f.n); err != nil {
			return nil, err
		}
	}
	if r.count > maxCountBits || r.dataSize > maxSizeBits {
		return nil, &vmcore.FormatError{Off: -1, Msg: fmt.Sprintf("printk: implausible ring buffer: count_bits %d, size_bits %d", r.count, r.dataSize)}
	}
	r.count, r.dataSize = 1<<r.count, 1<<r.dataSize
	r.desc = make([]byte, l.descSize)
	r.info = make([]byte, l.infoSize)
	return r, nil
}

// record reads record id into rec; ok is false when it is to be skipped.
func (r *ring) record(id uint64, rec *Record) (bool, error) {
	l := r.l
	slot := id % r.count
	if err := r.mem.ReadVirt(r.descs+slot*l.descSize, r.desc); err != nil {
		return false, fmt.Errorf("printk: descriptor %d: %w", id, err)
	}
	sv := u64(r.desc, l.descState+l.counter)
	if sv&descIDMask != id {
		return false, nil
	}
	if st := sv >> descFlagShift; st != descCommitted && st != descFinalized {
		return false, nil
	}
	begin := u64(r.desc, l.descText+l.lposBegin) % r.dataSize
	next := u64(r.desc, l.descText+l.lposNext) % r.dataSize
	if begin == next {
		return false, nil // data-less record
	}
	if err := r.mem.ReadVirt(r.infos+slot*l.infoSize, r.info); err != nil {
		return false, fmt.Errorf("printk: record info %d: %w", id, err)
	}
	textLen := uint64(binary.LittleEndian.Uint16(r.info[l.infoLen:]))
	if begin > next { // the block wrapped: its data is at the start
		begin = 0
	}
	begin += 8 // the block starts with its descriptor id
	if begin > next {
		textLen = 0
	} else if next-begin < textLen {
		textLen = next - begin // truncated record
	}
	rec.Seq = u64(r.info, l.infoSeq)
	rec.TimeNS = u64(r.info, l.infoTS)
	rec.HasCaller = l.infoCaller >= 0
	rec.CallerID = 0
	if rec.HasCaller {
		rec.CallerID = binary.LittleEndian.Uint32(r.info[l.infoCaller:])
	}
	if cap(r.text) < int(textLen) {
		r.text = make([]byte, textLen)
	}
	rec.Text = r.text[:textLen]
	if textLen > 0 {
		if err := r.mem.ReadVirt(r.data+begin, rec.Text); err != nil {
			return false, fmt.Errorf("printk: text of record %d: %w", id, err)
		}
	}
	return true, nil
}

// Records calls fn for each committed record of the ring buffer, oldest
// first, as makedumpfile does: descriptors from tail_id to head_id. The
// Record and its Text are reused after fn returns.
//
// The walk is bounded by the distance from tail to head, which a ring of
// 1<<count_bits descriptors keeps below its size; a corrupt ring claiming
// more is refused before anything is read. opt.Check, when set, is called
// every checkEvery descriptors and stops the walk with its error.
func Records(mem Memory, info *vmcore.VMCOREINFO, opt Options, fn func(*Record) error) error {
	r, err := openRing(mem, info)
	if err != nil {
		return err
	}
	var rec Record
	id := r.tail & descIDMask
	head := r.head & descIDMask
	if dist := (head - id) & descIDMask; dist >= r.count {
		return &vmcore.FormatError{Off: -1, Msg: fmt.Sprintf("printk: tail %d to head %d spans %d descriptors, more than the ring's %d: corrupt ring buffer", r.tail, r.head, dist+1, r.count)}
	}
	for n := 0; ; n++ {
		if opt.Check != nil && n%checkEvery == checkEvery-1 {
			if err := opt.Check(); err != nil {
				return fmt.Errorf("printk: after %d records: %w", n, err)
			}
		}
		ok, err := r.record(id, &rec)
		if err != nil {
			return err
		}
		if ok {
			if err := fn(&rec); err != nil {
				return err
			}
		}
		if id == head {
			return nil
		}
		id = (id + 1) & descIDMask
	}
}

// checkEvery is how often Records calls Options.Check: often enough that a
// time limit holds to a fraction of a second, rarely enough to cost nothing.
const checkEvery = 1024

// Options changes the output of Dump.
type Options struct {
	// CallerID adds the caller field ("[    T123] ") after the time stamp,
	// as makedumpfile 1.7.4 and later do when the kernel exports
	// OFFSET(printk_info.caller_id). makedumpfile 1.7.2 does not.
	CallerID bool
	// Check, when set, is called now and then during the walk; its error
	// stops it. The crash kernel uses it to feed its watchdog and to bound
	// the time a damaged ring can take.
	Check func() error
}

// Dump writes the kernel log in the format of `makedumpfile --dump-dmesg`:
// "[%5d.%06d] text" per record; lines after a newline in a record are
// indented to the text column; bytes that are neither printable ASCII nor
// white space are written \xNN (as makedumpfile, which formats a signed
// char: bytes 0x80-0xff become \xffffffNN).
func Dump(w io.Writer, mem Memory, info *vmcore.VMCOREINFO, opt Options) error {
	var buf []byte
	return Records(mem, info, opt, func(r *Record) error {
		buf = Format(buf[:0], r, opt)
		_, err := w.Write(buf)
		return err
	})
}

// Format appends the makedumpfile --dump-dmesg line(s) of r to dst.
func Format(dst []byte, r *Record, opt Options) []byte {
	start := len(dst)
	dst = append(dst, '[')
	dst = appendPadded(dst, r.TimeNS/1e9, 5, ' ')
	dst = append(dst, '.')
	dst = appendPadded(dst, r.TimeNS%1e9/1000, 6, '0')
	dst = append(dst, "] "...)
	if opt.CallerID && r.HasCaller {
		c := 'T'
		if r.CallerID&0x80000000 != 0 {
			c = 'C'
		}
		id := strconv.AppendUint([]byte{byte(c)}, uint64(r.CallerID&^0x80000000), 10)
		dst = append(dst, '[')
		dst = append(dst, bytes.Repeat([]byte{' '}, max(0, 8-len(id)))...)
		dst = append(dst, id...)
		dst = append(dst, "] "...)
	}
	indent := len(dst) - start
	for _, b := range r.Text {
		switch {
		case b == '\n':
			dst = append(dst, '\n')
			for range indent {
				dst = append(dst, ' ')
			}
		case b >= 0x20 && b < 0x7f, b >= '\t' && b <= '\r':
			dst = append(dst, b)
		case b >= 0x80:
			dst = append(dst, `\xffffff`...)
			dst = appendHex2(dst, b)
		default:
			dst = append(dst, `\x`...)
			dst = appendHex2(dst, b)
		}
	}
	return append(dst, '\n')
}

func appendHex2(dst []byte, b byte) []byte {
	const hex = "0123456789abcdef"
	return append(dst, hex[b>>4], hex[b&15])
}

func appendPadded(dst []byte, v uint64, width int, pad byte) []byte {
	var tmp [20]byte
	s := strconv.AppendUint(tmp[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, pad)
	}
	return append(dst, s...)
}
