package crypttab

import (
	"errors"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/config"
)

const debian = `# <target name>	<source device>		<key file>	<options>
sda3_crypt UUID=0a1b2c3d-0000-4000-8000-000000000001 none luks,discard

  # swap, random key
cswap	/dev/sda2	/dev/urandom	swap,cipher=aes-xts-plain64,size=256
home	UUID=0a1b2c3d-0000-4000-8000-000000000002
data  /dev/disk/by-partuuid/1234  /etc/keys/data.key
bad-line-with-one-field
five fields are one too many
`

func TestParse(t *testing.T) {
	f := Parse([]byte(debian))
	if got := string(f.Bytes()); got != debian {
		t.Fatalf("Bytes = %q, want the input", got)
	}
	var got []string
	for _, e := range f.Entries() {
		got = append(got, strings.Join([]string{e.Name, e.Device, e.KeyFile, strings.Join(e.Options, "|")}, " ; "))
	}
	want := []string{
		"sda3_crypt ; UUID=0a1b2c3d-0000-4000-8000-000000000001 ; none ; luks|discard",
		"cswap ; /dev/sda2 ; /dev/urandom ; swap|cipher=aes-xts-plain64|size=256",
		"home ; UUID=0a1b2c3d-0000-4000-8000-000000000002 ;  ; ",
		"data ; /dev/disk/by-partuuid/1234 ; /etc/keys/data.key ; ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	es := f.Entries()
	if es[0].Line != 1 || es[1].Line != 4 {
		t.Errorf("lines %d, %d", es[0].Line, es[1].Line)
	}
	if v, ok := es[1].Option("cipher"); !ok || v != "aes-xts-plain64" {
		t.Errorf("Option(cipher) = %q, %v", v, ok)
	}
	if _, ok := es[0].Option("discard"); !ok {
		t.Error("flag option discard not found")
	}
	if _, ok := es[0].Option("disc"); ok {
		t.Error("a prefix of an option matched")
	}
}

// TestParseEdges: files without a final newline, with CRLF, empty.
func TestParseEdges(t *testing.T) {
	for _, in := range []string{"", "\n", "a b", "a b\r\n# c\r\n", "\n\n\t\n", "#a b c d"} {
		if got := string(Parse([]byte(in)).Bytes()); got != in {
			t.Errorf("Parse(%q).Bytes() = %q", in, got)
		}
	}
	if n := len(Parse([]byte("#a b c d\n")).Entries()); n != 0 {
		t.Errorf("a comment gave %d entries", n)
	}
	if e := Parse([]byte("a b\r\n")).Entries(); len(e) != 1 || e[0].Device != "b" {
		t.Errorf("CRLF line: %+v", e)
	}
}

func TestSetOption(t *testing.T) {
	const opt = "link-volume-key=@u::%user:kdump-cryptsetup:vk-x"
	for _, tc := range []struct {
		name, in, want string
		changed        bool
	}{
		{"append", "root UUID=x none luks,discard\n", "root UUID=x none luks,discard," + opt + "\n", true},
		{"keep tabs and trailing text", "root\tUUID=x\tnone\tluks  \n", "root\tUUID=x\tnone\tluks," + opt + "  \n", true},
		{"two fields", "root\tUUID=x\n", "root\tUUID=x\tnone\t" + opt + "\n", true},
		{"two fields, trailing space", "root UUID=x \n", "root UUID=x none " + opt + " \n", true},
		{"three fields", "root UUID=x /key", "root UUID=x /key " + opt, true},
		{"options none", "root UUID=x none none\n", "root UUID=x none " + opt + "\n", true},
		{"options dash", "root UUID=x - -\n", "root UUID=x - " + opt + "\n", true},
		{"replace other type", "root UUID=x none luks,link-volume-key=@u::%logon:kdump-cryptsetup:vk-x,discard\n",
			"root UUID=x none luks," + opt + ",discard\n", true},
		{"drop duplicates", "root UUID=x none link-volume-key=a,luks,link-volume-key=b\n", "root UUID=x none " + opt + ",luks\n", true},
		{"already there", "root UUID=x none luks," + opt + "\n", "root UUID=x none luks," + opt + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Parse([]byte(tc.in))
			old := f.Clone()
			changed, err := f.SetOption(0, LinkVolumeKey, "@u::%user:kdump-cryptsetup:vk-x")
			if err != nil || changed != tc.changed {
				t.Fatalf("SetOption = %v, %v; want %v", changed, err, tc.changed)
			}
			if got := string(f.Bytes()); got != tc.want {
				t.Errorf("after SetOption:\n%q\nwant\n%q", got, tc.want)
			}
			if got := string(old.Bytes()); got != tc.in {
				t.Errorf("the clone changed too: %q", got)
			}
			if v, ok := f.Entries()[0].Option(LinkVolumeKey); !ok || v != "@u::%user:kdump-cryptsetup:vk-x" {
				t.Errorf("option read back = %q, %v", v, ok)
			}
		})
	}
	f := Parse([]byte("# comment\n"))
	if _, err := f.SetOption(0, LinkVolumeKey, "x"); !errors.Is(err, ErrNotVolume) {
		t.Errorf("SetOption on a comment: %v", err)
	}
}

func TestRemoveOption(t *testing.T) {
	ours := func(v string) bool { return strings.HasSuffix(v, ":kdump-cryptsetup:vk-x") }
	for _, tc := range []struct {
		name, in, want string
		changed        bool
	}{
		{"middle", "root UUID=x none luks,link-volume-key=@u::%user:kdump-cryptsetup:vk-x,discard\n", "root UUID=x none luks,discard\n", true},
		{"last, tabs", "root\tUUID=x\tnone\tluks,link-volume-key=@u::%logon:kdump-cryptsetup:vk-x\n", "root\tUUID=x\tnone\tluks\n", true},
		{"the only option", "root UUID=x none link-volume-key=@u::%user:kdump-cryptsetup:vk-x\n", "root UUID=x none\n", true},
		{"the only option, trailing space", "root UUID=x none link-volume-key=@u::%user:kdump-cryptsetup:vk-x  \n", "root UUID=x none  \n", true},
		{"every one", "root UUID=x none link-volume-key=@u::%user:kdump-cryptsetup:vk-x,luks,link-volume-key=@u::%logon:kdump-cryptsetup:vk-x\n", "root UUID=x none luks\n", true},
		{"someone else's", "root UUID=x none luks,link-volume-key=@s::%user:mine\n", "root UUID=x none luks,link-volume-key=@s::%user:mine\n", false},
		{"none", "root UUID=x none luks\n", "root UUID=x none luks\n", false},
		{"three fields", "root UUID=x /key", "root UUID=x /key", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Parse([]byte(tc.in))
			changed, err := f.RemoveOption(0, LinkVolumeKey, ours)
			if err != nil || changed != tc.changed {
				t.Fatalf("RemoveOption = %v, %v; want %v", changed, err, tc.changed)
			}
			if got := string(f.Bytes()); got != tc.want {
				t.Errorf("after RemoveOption:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	// What SetOption added to a line of two fields, RemoveOption takes off.
	f := Parse([]byte("root\tUUID=x\n"))
	f.SetOption(0, LinkVolumeKey, "@u::%user:kdump-cryptsetup:vk-x")
	f.RemoveOption(0, LinkVolumeKey, ours)
	if got := string(f.Bytes()); got != "root\tUUID=x\tnone\n" {
		t.Errorf("set then removed: %q", got)
	}
	if _, err := Parse([]byte("# c\n")).RemoveOption(0, LinkVolumeKey, ours); !errors.Is(err, ErrNotVolume) {
		t.Errorf("RemoveOption on a comment: %v", err)
	}
}

func TestLinkVolumeKeyValue(t *testing.T) {
	if got := LinkVolumeKeyValue("logon", "kdump-cryptsetup:vk-u"); got != "@u::%logon:kdump-cryptsetup:vk-u" {
		t.Errorf("LinkVolumeKeyValue = %q", got)
	}
	if KeyType(config.Kernel) != "logon" || KeyType(config.Initrd) != "user" {
		t.Errorf("KeyType: kernel %s, initrd %s", KeyType(config.Kernel), KeyType(config.Initrd))
	}
}

func TestDiff(t *testing.T) {
	in := "# 1\n# 2\n# 3\nroot UUID=x none luks\n# 5\n# 6\n# 7\n# 8\n# 9\nhome UUID=y none luks\n"
	f := Parse([]byte(in))
	g := f.Clone()
	if d := Diff("/etc/crypttab", f, g); d != "" {
		t.Errorf("Diff of equal files = %q", d)
	}
	if _, err := g.SetOption(3, "a", "1"); err != nil {
		t.Fatal(err)
	}
	want := `--- /etc/crypttab
+++ /etc/crypttab (new)
@@ -2,5 +2,5 @@
 # 2
 # 3
-root UUID=x none luks
+root UUID=x none luks,a=1
 # 5
 # 6
`
	if d := Diff("/etc/crypttab", f, g); d != want {
		t.Errorf("Diff:\n%s\nwant:\n%s", d, want)
	}
	if _, err := g.SetOption(9, "a", "1"); err != nil {
		t.Fatal(err)
	}
	want += `@@ -8,3 +8,3 @@
 # 8
 # 9
-home UUID=y none luks
+home UUID=y none luks,a=1
`
	if d := Diff("/etc/crypttab", f, g); d != want {
		t.Errorf("Diff of two hunks:\n%s\nwant:\n%s", d, want)
	}
	// Changes close together share a hunk; consecutive ones are one run.
	h := Parse([]byte("a b\nc d\n# x\n"))
	k := h.Clone()
	k.SetOption(0, "o", "1")
	k.SetOption(1, "o", "1")
	want = "--- t\n+++ t (new)\n@@ -1,3 +1,3 @@\n-a b\n-c d\n+a b none o=1\n+c d none o=1\n # x\n"
	if d := Diff("t", h, k); d != want {
		t.Errorf("Diff of a run:\n%s\nwant:\n%s", d, want)
	}
	// Files of different lengths: one hunk of every line.
	want = "--- t\n+++ t (new)\n@@ -1,1 +1,2 @@\n a b\n+c d\n"
	if d := Diff("t", Parse([]byte("a b\n")), Parse([]byte("a b\nc d\n"))); d != want {
		t.Errorf("Diff of different lengths:\n%s\nwant:\n%s", d, want)
	}
}
