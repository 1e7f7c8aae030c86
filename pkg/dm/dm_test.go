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
