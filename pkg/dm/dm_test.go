package dm

import (
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestWithoutSectorSize(t *testing.T) {
	got := withoutSectorSize([]string{"allow_discards", "sector_size:4096", "iv_large_sectors"})
	if strings.Join(got, " ") != "allow_discards iv_large_sectors" {
		t.Errorf("got %v", got)
	}
}

func TestCreateCryptRefusesKeyBytes(t *testing.T) {
	if _, err := CreateCrypt(Crypt{Name: "x", KeyRef: "00112233"}); err == nil || !strings.Contains(err.Error(), "keyring reference") {
		t.Errorf("hex key accepted: %v", err)
	}
}

// TestLoadBuffer: the DM_TABLE_LOAD argument as the kernel reads it: each
// spec's next is the distance to the following one, parameters are
// NUL-terminated and padded to 8 bytes.
func TestLoadBuffer(t *testing.T) {
	tab := Table{Name: "vg0-root", UUID: "LVM-x", Targets: []Target{
		{Start: 0, Length: 40960, Type: "linear", Params: "8:3 2048"},
		{Start: 40960, Length: 32768, Type: "striped", Params: "2 128 8:3 83968 8:16 2048"},
	}}
	buf, err := loadBuffer(tab)
	if err != nil {
		t.Fatal(err)
	}
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	if hdr.Data_size != uint32(len(buf)) || hdr.Data_start != unix.SizeofDmIoctl || hdr.Target_count != 2 ||
		unix.ByteSliceToString(hdr.Name[:]) != "vg0-root" || hdr.Version != [3]uint32{4, 0, 0} {
		t.Errorf("header %+v", hdr)
	}
	off := int(hdr.Data_start)
	for i, want := range tab.Targets {
		spec := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[off]))
		params := unix.ByteSliceToString(buf[off+unix.SizeofDmTargetSpec:])
		if spec.Sector_start != want.Start || spec.Length != want.Length || unix.ByteSliceToString(spec.Target_type[:]) != want.Type ||
			params != want.Params || spec.Next%8 != 0 || int(spec.Next) < unix.SizeofDmTargetSpec+len(params)+1 {
			t.Errorf("target %d: %+v %q", i, spec, params)
		}
		off += int(spec.Next)
	}
	if off != len(buf) {
		t.Errorf("specs end at %d of %d", off, len(buf))
	}
}

func TestLoadBufferRefuses(t *testing.T) {
	line := Target{Length: 8, Type: "linear", Params: "8:3 0"}
	for _, tc := range []struct {
		tab  Table
		want string
	}{
		{Table{Name: "", Targets: []Target{line}}, "empty, too long"},
		{Table{Name: "a/b", Targets: []Target{line}}, "holds '/'"},
		{Table{Name: strings.Repeat("n", 128), Targets: []Target{line}}, "too long"},
		{Table{Name: "x", UUID: strings.Repeat("u", 129), Targets: []Target{line}}, "UUID"},
		{Table{Name: "x"}, "empty table"},
		{Table{Name: "x", Targets: []Target{line, {Start: 9, Length: 8, Type: "linear"}}}, "line 2 covers 9+8, want a line from sector 8 on"},
		{Table{Name: "x", Targets: []Target{{Length: 0, Type: "linear"}}}, "line 1 covers 0+0"},
		{Table{Name: "x", Targets: []Target{{Length: 8, Type: "a-very-long-target-type"}}}, "bad target type"},
		{Table{Name: "x", Targets: []Target{{Length: 8, Type: "linear", Params: "8:3\x000"}}}, "NUL"},
	} {
		if _, err := loadBuffer(tc.tab); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.tab, err, tc.want)
		}
	}
}

func TestMappingsCloseEmpty(t *testing.T) {
	var m Mappings
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}

// TestWalkSpecs reads a DM_TABLE_STATUS answer laid out as the kernel
// does (retrieve_status): each spec's next is its offset from the start
// of the data, parameters NUL-terminated and padded to 8.
func TestWalkSpecs(t *testing.T) {
	want := []Target{
		{Start: 0, Length: 40960, Type: "linear", Params: "254:0 2048"},
		{Start: 40960, Length: 32768, Type: "striped", Params: "2 128 254:0 83968 8:16 2048"},
	}
	buf := make([]byte, 4096)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	hdr.Data_start = unix.SizeofDmIoctl
	hdr.Data_size = uint32(len(buf))
	hdr.Target_count = 2
	rel := 0
	for _, tg := range want {
		off := unix.SizeofDmIoctl + rel
		spec := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[off]))
		spec.Sector_start, spec.Length = tg.Start, tg.Length
		copy(spec.Target_type[:], tg.Type)
		copy(buf[off+unix.SizeofDmTargetSpec:], tg.Params)
		rel += unix.SizeofDmTargetSpec + (len(tg.Params)+1+7)&^7
		spec.Next = uint32(rel)
	}
	var got []Target
	err := walkSpecs("vg0-root", buf, func(n int, start, length uint64, typ string, p []byte) error {
		got = append(got, Target{Start: start, Length: length, Type: typ, Params: string(p)})
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("walkSpecs = %+v, %v", got, err)
	}
	hdr.Target_count = 3
	if err := walkSpecs("vg0-root", buf[:unix.SizeofDmIoctl+rel+8], func(int, uint64, uint64, string, []byte) error { return nil }); err == nil {
		t.Error("a third target past the end of the answer was read")
	}
	hdr.Target_count = 0
	if err := walkSpecs("vg0-root", buf, nil); err == nil || !strings.Contains(err.Error(), "no table") {
		t.Errorf("no targets: %v", err)
	}
}
