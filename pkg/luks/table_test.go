package luks_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/luks"
)

// luks2Header is a mappable LUKS2 header: 64-byte aes-xts-plain64 key,
// data at 16 MiB to the end of the device.
func luks2Header() luks.Header {
	return luks.Header{
		Version: 2, UUID: synthUUID, SegmentType: "crypt", Segments: 1,
		Cipher: "aes-xts-plain64", KeySize: 64, Offset: 16 << 20, Dynamic: true, SectorSize: 512,
	}
}

const mib = 1 << 20

func TestTable(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(h *luks.Header)
		devSize uint64
		want    string // Line("DEV", "KEY"); "" when an error is wanted
		err     string
		unsupp  bool // error must wrap ErrUnsupported
	}{
		{"plain 512", func(*luks.Header) {}, 64 * mib,
			"0 98304 crypt aes-xts-plain64 KEY 0 DEV 32768", "", false},
		{"4096 sectors", func(h *luks.Header) { h.SectorSize = 4096 }, 64 * mib,
			"0 98304 crypt aes-xts-plain64 KEY 0 DEV 32768 1 sector_size:4096", "", false},
		{"dynamic rounds down to sector", func(h *luks.Header) { h.SectorSize = 4096 }, 16*mib + 3*4096 + 512 + 7,
			"0 24 crypt aes-xts-plain64 KEY 0 DEV 32768 1 sector_size:4096", "", false},
		{"dynamic rounds down to 512", func(*luks.Header) {}, 16*mib + 1000,
			"0 1 crypt aes-xts-plain64 KEY 0 DEV 32768", "", false},
		{"fixed size", func(h *luks.Header) { h.Dynamic = false; h.Size = 8 * mib }, 64 * mib,
			"0 16384 crypt aes-xts-plain64 KEY 0 DEV 32768", "", false},
		{"fixed size fills device", func(h *luks.Header) { h.Dynamic = false; h.Size = 8 * mib }, 24 * mib,
			"0 16384 crypt aes-xts-plain64 KEY 0 DEV 32768", "", false},
		{"flags in cryptsetup order, unknown ignored", func(h *luks.Header) {
			h.SectorSize = 4096
			h.Flags = []string{"no-write-workqueue", "bogus", "no-journal", "allow-discards", "same-cpu-crypt",
				"submit-from-crypt-cpus", "no-read-workqueue", "allow-discards"}
		}, 64 * mib,
			"0 98304 crypt aes-xts-plain64 KEY 0 DEV 32768 6 allow_discards same_cpu_crypt submit_from_crypt_cpus no_read_workqueue no_write_workqueue sector_size:4096", "", false},
		{"iv_tweak does not reach dm", func(h *luks.Header) { h.IVTweak = 8 }, 64 * mib,
			"0 98304 crypt aes-xts-plain64 KEY 0 DEV 32768", "", false},
		{"luks1 essiv", func(h *luks.Header) {
			h.Version = 1
			h.Cipher = "aes-cbc-essiv:sha256"
			h.KeySize = 32
			h.Offset = 4096 * 512
		}, 32 * mib, "0 61440 crypt aes-cbc-essiv:sha256 KEY 0 DEV 4096", "", false},
		{"aes-ecb", func(h *luks.Header) { h.Cipher = "aes-ecb"; h.KeySize = 16 }, 17 * mib,
			"0 2048 crypt aes-ecb KEY 0 DEV 32768", "", false},
		{"serpent-xts", func(h *luks.Header) { h.Cipher = "serpent-xts-plain64" }, 17 * mib,
			"0 2048 crypt serpent-xts-plain64 KEY 0 DEV 32768", "", false},

		{"device too small", func(*luks.Header) {}, 16 * mib, "", "too small", false},
		{"no whole sector", func(h *luks.Header) { h.SectorSize = 4096 }, 16*mib + 3584, "", "no whole 4096-byte sector", false},
		{"fixed size beyond device", func(h *luks.Header) { h.Dynamic = false; h.Size = 8 * mib }, 24*mib - 512, "", "too small", false},
		{"fixed size off sector", func(h *luks.Header) { h.Dynamic = false; h.Size = 8*mib + 512; h.SectorSize = 4096 }, 64 * mib, "", "not a multiple of sector size", false},
		{"requirements", func(h *luks.Header) { h.Requirements = []string{"online-reencrypt-v2"} }, 64 * mib, "", "online-reencrypt-v2", true},
		{"two segments", func(h *luks.Header) { h.Segments = 2 }, 64 * mib, "", "2 segments", true},
		{"linear segment", func(h *luks.Header) { h.SegmentType = "linear" }, 64 * mib, "", `segment type "linear"`, true},
		{"integrity", func(h *luks.Header) { h.Integrity = "hmac(sha256)" }, 64 * mib, "", "integrity", true},
		{"sector 8192", func(h *luks.Header) { h.SectorSize = 8192 }, 64 * mib, "", "sector size 8192", true},
		{"sector 1536", func(h *luks.Header) { h.SectorSize = 1536 }, 64 * mib, "", "sector size 1536", true},
		{"capi cipher", func(h *luks.Header) { h.Cipher = "capi:xts(aes)-plain64" }, 64 * mib, "", "unknown cipher", true},
		{"cipher_null", func(h *luks.Header) { h.Cipher = "cipher_null-ecb" }, 64 * mib, "", "unknown cipher", true},
		{"adiantum", func(h *luks.Header) { h.Cipher = "xchacha12,aes-adiantum-plain64" }, 64 * mib, "", "unknown cipher", true},
		{"space in cipher", func(h *luks.Header) { h.Cipher = "aes-xts-plain64 1 allow_discards" }, 64 * mib, "", "unknown IV mode", true},
		{"unknown mode", func(h *luks.Header) { h.Cipher = "aes-gcm-random" }, 64 * mib, "", "unknown chaining mode", true},
		{"no iv", func(h *luks.Header) { h.Cipher = "aes-xts" }, 64 * mib, "", "no IV mode", true},
		{"ecb with iv", func(h *luks.Header) { h.Cipher = "aes-ecb-plain"; h.KeySize = 16 }, 64 * mib, "", "ecb takes no IV", true},
		{"essiv without hash", func(h *luks.Header) { h.Cipher = "aes-cbc-essiv"; h.KeySize = 32 }, 64 * mib, "", "bad IV options", true},
		{"plain64 with options", func(h *luks.Header) { h.Cipher = "aes-xts-plain64:sha256" }, 64 * mib, "", "bad IV options", true},
		{"aes-xts short key", func(h *luks.Header) { h.KeySize = 16 }, 64 * mib, "", "16-byte key", true},
		{"aes-cbc long key", func(h *luks.Header) { h.Cipher = "aes-cbc-essiv:sha256" }, 64 * mib, "", "64-byte key", true},
		{"no key size", func(h *luks.Header) { h.KeySize = 0 }, 64 * mib, "", "key size unknown", true},
		{"key size huge", func(h *luks.Header) { h.KeySize = 4096 }, 64 * mib, "", "key size 4096 out of range", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := luks2Header()
			c.edit(&h)
			tab, err := h.Table(c.devSize)
			if c.want != "" {
				if err != nil {
					t.Fatalf("Table: %v", err)
				}
				if got := tab.Line("DEV", "KEY"); got != c.want {
					t.Errorf("Line =\n %s\nwant\n %s", got, c.want)
				}
				if tab.Length%uint64(tab.SectorSize/512) != 0 || tab.KeySize != h.KeySize {
					t.Errorf("table %+v", tab)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Table = %+v, %v; want error with %q", tab, err, c.err)
			}
			if errors.Is(err, luks.ErrUnsupported) != c.unsupp {
				t.Errorf("errors.Is(%v, ErrUnsupported) = %v, want %v", err, !c.unsupp, c.unsupp)
			}
			if !strings.HasPrefix(err.Error(), "luks: "+synthUUID+": ") {
				t.Errorf("error %q does not name the volume", err)
			}
		})
	}
}

func TestTableNeverLargeSectors(t *testing.T) {
	for _, ss := range []int{512, 1024, 2048, 4096} {
		h := luks2Header()
		h.SectorSize = ss
		tab, err := h.Table(64 * mib)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(tab.Params, "iv_large_sectors") || tab.IVOffset != 0 {
			t.Errorf("sector %d: %+v", ss, tab)
		}
	}
}

func TestLine(t *testing.T) {
	tab := luks.Table{Cipher: "aes-xts-plain64", KeySize: 64, Offset: 32768, Length: 100, SectorSize: 4096,
		Params: []string{"allow_discards", "sector_size:4096"}}
	got := tab.Line("/dev/vda2", ":64:logon:cryptsetup:x")
	want := "0 100 crypt aes-xts-plain64 :64:logon:cryptsetup:x 0 /dev/vda2 32768 2 allow_discards sector_size:4096"
	if got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}
