package printk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/vmcore"
	"github.com/ukdump/ukdump/pkg/vmcore/internal/synth"
)

func synthCore(t testing.TB, l synth.Layout) (*vmcore.VMCOREINFO, *vmcore.Translator) {
	t.Helper()
	b := synth.New(l).ELF()
	c, err := vmcore.NewCore(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.VMCOREINFO()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.NewTranslator()
	if err != nil {
		t.Fatal(err)
	}
	return info, tr
}

func TestSyntheticDmesg(t *testing.T) {
	info, tr := synthCore(t, synth.Layout73)
	var got bytes.Buffer
	if err := Dump(&got, tr, info, Options{}); err != nil {
		t.Fatal(err)
	}
	if got.String() != synth.Dmesg {
		t.Errorf("got\n%s\nwant\n%s", got.String(), synth.Dmesg)
	}
	got.Reset()
	if err := Dump(&got, tr, info, Options{CallerID: true}); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(got.String(), "\n"); first != "[    1.500000] [      C3] hello, world" {
		t.Errorf("with caller id: %q", first)
	}
	var seqs []uint64
	if err := Records(tr, info, Options{}, func(r *Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[103 104 107 108 109]" {
		t.Errorf("record seqs %v", seqs)
	}
	stop := errors.New("stop")
	if err := Records(tr, info, Options{}, func(*Record) error { return stop }); err != stop {
		t.Errorf("callback error not returned: %v", err)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		r    Record
		opt  Options
		want string
	}{
		{Record{TimeNS: 0, Text: []byte("x")}, Options{}, "[    0.000000] x\n"},
		{Record{TimeNS: 123456_789_999_999, Text: []byte("")}, Options{}, "[123456.789999] \n"},
		{Record{TimeNS: 1e9, Text: []byte("a\nb\n")}, Options{}, "[    1.000000] a\n               b\n               \n"},
		{Record{Text: []byte("\x00\x1b\x80\xff\v\f\r")}, Options{}, "[    0.000000] \\x00\\x1b\\xffffff80\\xffffffff\v\f\r\n"},
		{Record{Text: []byte("t"), HasCaller: true, CallerID: 12345}, Options{CallerID: true}, "[    0.000000] [  T12345] t\n"},
		{Record{Text: []byte("t"), HasCaller: true, CallerID: 0x80000001}, Options{}, "[    0.000000] t\n"},
	} {
		if got := string(Format(nil, &tc.r, tc.opt)); got != tc.want {
			t.Errorf("Format(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

// mapMemory is kernel memory for fuzzing: one flat region at base.
type mapMemory struct {
	base uint64
	mem  []byte
}

func (m *mapMemory) ReadVirt(vaddr uint64, buf []byte) error {
	if vaddr < m.base || vaddr-m.base > uint64(len(m.mem)) || uint64(len(buf)) > uint64(len(m.mem))-(vaddr-m.base) {
		return fmt.Errorf("address %#x+%d not mapped", vaddr, len(buf))
	}
	copy(buf, m.mem[vaddr-m.base:])
	return nil
}

// fuzzInfo is the VMCOREINFO of the synthetic kernels, with prb at base.
func fuzzInfo(t testing.TB) *vmcore.VMCOREINFO {
	text := synth.Layout73.VMCOREINFO()
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "SYMBOL(prb)=") {
			l = "SYMBOL(prb)=ffff888000000000"
		}
		lines = append(lines, l)
	}
	info, err := vmcore.ParseVMCOREINFO([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// fuzzSeed lays out a small ring: prb pointer at 0, ring at 0x100, descs at
// 0x200, infos at 0x400, data at 0x800.
func fuzzSeed() []byte {
	const base = 0xffff888000000000
	m := make([]byte, 0x1000)
	le := binary.LittleEndian
	le.PutUint64(m[0:], base+0x100)
	le.PutUint32(m[0x100:], 2)          // count_bits
	le.PutUint64(m[0x108:], base+0x200) // descs
	le.PutUint64(m[0x110:], base+0x400) // infos
	le.PutUint64(m[0x118:], 1)          // head
	le.PutUint64(m[0x120:], 0)          // tail
	le.PutUint32(m[0x130:], 8)          // size_bits
	le.PutUint64(m[0x138:], base+0x800)
	for id := uint64(0); id < 2; id++ {
		le.PutUint64(m[0x200+id*24:], 2<<62|id)
		le.PutUint64(m[0x208+id*24:], id*32)
		le.PutUint64(m[0x210+id*24:], id*32+24)
		le.PutUint64(m[0x408+id*88:], id*1e9)
		le.PutUint16(m[0x410+id*88:], 12)
		le.PutUint64(m[0x800+id*32:], id)
		copy(m[0x808+id*32:], "message\n\xe2x!")
	}
	return m
}

func FuzzPrintk(f *testing.F) {
	info := fuzzInfo(f)
	f.Add(fuzzSeed())
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, mem []byte) {
		if len(mem) > 1<<13 {
			return
		}
		m := &mapMemory{base: 0xffff888000000000, mem: mem}
		var out []byte
		records := 0
		start := time.Now()
		watchdog := time.AfterFunc(10*time.Second, func() { panic("FuzzPrintk: input takes more than 10 s") })
		defer watchdog.Stop()
		err := Records(m, info, Options{}, func(r *Record) error {
			records++
			if time.Since(start) > time.Second {
				t.Fatalf("too slow")
			}
			if len(r.Text) > 0xffff {
				t.Fatalf("text of %d bytes", len(r.Text))
			}
			out = Format(out[:0], r, Options{CallerID: true})
			return nil
		})
		_ = err
		if records > len(mem)/24+1 {
			t.Fatalf("%d records from %d bytes", records, len(mem))
		}
	})
}

// TestFormatErrors checks that a corrupt ring buffer and inconsistent
// VMCOREINFO give a *vmcore.FormatError.
func TestFormatErrors(t *testing.T) {
	const base = 0xffff888000000000
	info := fuzzInfo(t)
	noop := func(*Record) error { return nil }
	bigRing := fuzzSeed()
	binary.LittleEndian.PutUint32(bigRing[0x100:], maxCountBits+1) // count_bits
	bad, err := vmcore.ParseVMCOREINFO([]byte(strings.Replace(info.String(), "SIZE(printk_info)=88", "SIZE(printk_info)=8", 1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		info *vmcore.VMCOREINFO
		mem  []byte
		want string
	}{
		{"count_bits", info, bigRing, "implausible ring buffer"},
		{"SIZE(printk_info)", bad, fuzzSeed(), "inconsistent VMCOREINFO"},
	} {
		err := Records(&mapMemory{base: base, mem: tc.mem}, tc.info, Options{}, noop)
		var fe *vmcore.FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a *vmcore.FormatError saying %q", tc.name, err, tc.want)
		}
	}
}

// TestRecordsBounded: a corrupt ring whose head is further from its tail
// than the ring has descriptors is refused before the walk (it was bounded
// only by the declared size, up to 2^30 reads), and Options.Check can stop
// a long walk (the crash kernel's time limit and watchdog).
func TestRecordsBounded(t *testing.T) {
	const base = 0xffff888000000000
	info := fuzzInfo(t)
	noop := func(*Record) error { return nil }
	far := fuzzSeed()
	binary.LittleEndian.PutUint64(far[0x118:], 1000) // head, with count_bits 2
	err := Records(&mapMemory{base: base, mem: far}, info, Options{}, noop)
	var fe *vmcore.FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "spans 1001 descriptors") {
		t.Fatalf("head far beyond the ring: %v, want a FormatError", err)
	}

	long := make([]byte, 0x20000)
	copy(long, fuzzSeed()[:0x200])
	binary.LittleEndian.PutUint32(long[0x100:], 12)   // count_bits: 4096
	binary.LittleEndian.PutUint64(long[0x118:], 4000) // head; descriptors all empty
	stop := errors.New("time is up")
	calls := 0
	err = Records(&mapMemory{base: base, mem: long}, info, Options{Check: func() error { calls++; return stop }}, noop)
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Records with a failing Check = %v after %d calls, want it stopped at the first", err, calls)
	}
	calls = 0
	if err := Records(&mapMemory{base: base, mem: long}, info, Options{Check: func() error { calls++; return nil }}, noop); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Errorf("Check called %d times over 4001 descriptors, want 3", calls)
	}
}
