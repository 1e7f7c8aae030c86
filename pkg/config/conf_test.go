package config

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/diskdump"
)

func TestParse(t *testing.T) {
	got, err := Parse(strings.NewReader(`# dump to the data disk
ext4 UUID=0A1B2C3D-0000-4000-8000-000000000001   # trailing comment
path /srv/crash/
default poweroff
final_action halt
extra_modules nvme ahci
target_timeout 15
cmdline_append loglevel=7
key_transport initrd
dump_level 17
compression zstd
format elf
scrub_keys no
`))
	if err != nil {
		t.Fatal(err)
	}
	want := File{
		Target:        Target{FSType: "ext4", Spec: "UUID=0A1B2C3D-0000-4000-8000-000000000001", UUID: "0a1b2c3d-0000-4000-8000-000000000001"},
		Path:          "/srv/crash",
		FailureAction: Poweroff,
		FinalAction:   Halt,
		ExtraModules:  []string{"nvme", "ahci"},
		TargetTimeout: 15 * time.Second,
		CmdlineAppend: []string{"loglevel=7"},
	}
	if got.Target != want.Target || got.Path != want.Path || got.FailureAction != want.FailureAction ||
		got.FinalAction != want.FinalAction || strings.Join(got.ExtraModules, ",") != "nvme,ahci" ||
		got.TargetTimeout != want.TargetTimeout || strings.Join(got.CmdlineAppend, " ") != "loglevel=7" ||
		got.KeyTransport != Initrd || got.Dump != (Dump{Level: 17, Compression: diskdump.Zstd, Format: diskdump.ELFFormat, KeepKeys: true}) {
		t.Errorf("Parse = %+v, want %+v", *got, want)
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := Parse(strings.NewReader("xfs LABEL=dumps\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != DefaultPath || got.FailureAction != Reboot || got.FinalAction != Reboot ||
		got.TargetTimeout != DefaultTargetTimeout || got.Target.UUID != "" || got.KeyTransport != Auto ||
		got.Dump != (Dump{Level: 31, Compression: diskdump.Snappy, Format: diskdump.KdumpFormat}) {
		t.Errorf("defaults: %+v", *got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, conf, want string }{
		{"unknown directive", "ext4 /dev/vda\nfrobnicate yes\n", "line 2: frobnicate: unknown directive"},
		{"unsupported", "nfs server:/export\n", "line 1: nfs: not supported by ukdump: the crash kernel has no network"},
		{"scripts", "ext4 /dev/vda\nkdump_post /bin/true\n", "line 2: kdump_post: not supported by ukdump: the crash kernel runs no scripts"},
		{"other fs", "virtiofs myfs\n", "line 1: virtiofs: not supported by ukdump: not a filesystem ukdump dumps to"},
		{"shell", "failure_action shell\n", `line 1: failure_action: unknown action "shell": the crash kernel has no shell (want reboot, poweroff or halt)`},
		{"two timeouts", "disk_timeout 5\ntarget_timeout 7\n", "line 2: target_timeout given again (first on line 1)"},
		{"relative path", "ext4 /dev/vda\npath crash\n", `line 2: path: "crash" is not an absolute path`},
		{"bad action", "ext4 /dev/vda\n\nfinal_action explode\n", `line 3: final_action: unknown action "explode"`},
		{"bad device", "ext4 vda\n", `line 1: ext4: device "vda" is not UUID=`},
		{"empty uuid", "ext4 UUID=\n", `line 1: ext4: device "UUID=" is not`},
		{"two targets", "ext4 /dev/vda\nxfs /dev/vdb\n", "line 2: xfs given again (first on line 1)"},
		{"missing arg", "ext4 /dev/vda\npath\n", "line 2: path: want one argument, have 0"},
		{"bad timeout", "ext4 /dev/vda\ntarget_timeout -3\n", `line 2: target_timeout: "-3" is not a number of seconds from 1 to 3600`},
		// Once accepted: times a second, it overflowed and disabled the
		// crash kernel's watchdog.
		{"huge timeout", "ext4 /dev/vda\ntarget_timeout 9300000000000\n", `line 2: target_timeout: "9300000000000" is not a number of seconds from 1 to 3600`},
		{"extra arg", "ext4 /dev/vda extra\n", "line 1: ext4: want one device"},
		{"bad level", "ext4 /dev/vda\ndump_level 32\n", `line 2: dump_level: "32" is not a dump level from 0 to 31`},
		{"bad compression", "ext4 /dev/vda\ncompression lz4\n", `line 2: compression: compression "lz4" is not snappy, lzo, zstd, zlib or none`},
		{"bad format", "ext4 /dev/vda\nformat sadump\n", `line 2: format: format "sadump" is not kdump or elf`},
		{"collector", "ext4 /dev/vda\ncore_collector cp /proc/vmcore\n", "line 2: core_collector: only makedumpfile options"},
		{"bad transport", "ext4 /dev/vda\nkey_transport carrier-pigeon\n", `line 2: key_transport: unknown transport "carrier-pigeon"`},
		{"bad scrub", "ext4 /dev/vda\nscrub_keys maybe\n", `line 2: scrub_keys: "maybe" is not yes or no`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.conf))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.conf")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: err = %v", err)
	}
	name := filepath.Join(t.TempDir(), "ukdump.conf")
	if err := os.WriteFile(name, []byte("ext4 /dev/vda\npath x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(name); err == nil || !strings.Contains(err.Error(), name+": line 2: path") {
		t.Errorf("bad file: err = %v, want file name and line", err)
	}
}

func TestInitRoundTrip(t *testing.T) {
	in := Init{
		Target:        Target{FSType: "ext4", Spec: "LABEL=x", UUID: "u"},
		Path:          "/var/crash",
		Hostname:      "host",
		Modules:       []string{"/lib/modules/virtio_blk.ko"},
		TargetTimeout: Duration(90 * time.Second),
		FailureAction: Reboot,
		FinalAction:   Poweroff,
		Dump:          Dump{Level: 31, Compression: diskdump.Snappy, Format: diskdump.KdumpFormat},
	}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"target_timeout": 90`) {
		t.Errorf("timeout not in seconds: %s", b)
	}
	name := filepath.Join(t.TempDir(), "init.json")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := ReadInit(name)
	if err != nil {
		t.Fatal(err)
	}
	if out.Target != in.Target || out.TargetTimeout != in.TargetTimeout || out.FinalAction != Poweroff || out.Modules[0] != in.Modules[0] {
		t.Errorf("round trip: %+v != %+v", out, in)
	}
}

func TestInitValidate(t *testing.T) {
	ok := Init{Target: Target{FSType: "ext4", UUID: "u"}, Path: "/p", TargetTimeout: 1, FailureAction: Reboot, FinalAction: Reboot,
		Dump: Dump{Level: 31, Compression: diskdump.Zstd, Format: diskdump.KdumpFormat}}
	for _, tc := range []struct {
		name string
		edit func(*Init)
		want string
	}{
		{"no uuid", func(c *Init) { c.Target.UUID = "" }, "no UUID"},
		{"fs", func(c *Init) { c.Target.FSType = "ntfs" }, `unsupported filesystem "ntfs"`},
		{"path", func(c *Init) { c.Path = "rel" }, "not absolute"},
		{"timeout", func(c *Init) { c.TargetTimeout = 0 }, "target_timeout"},
		{"huge timeout", func(c *Init) { c.TargetTimeout = Duration(1 << 62) }, "target_timeout"},
		{"action", func(c *Init) { c.FinalAction = "" }, "unknown action"},
		{"dump", func(c *Init) { c.Dump.Level = 40 }, "dump_level 40"},
		{"volume name", func(c *Init) { c.Volumes = []Volume{{UUID: "v"}} }, "needs a UUID, a name and a header fingerprint"},
		{"kernel desc", func(c *Init) { c.Volumes = []Volume{{UUID: "v", Name: "n", Header: "h", Transport: Kernel}} }, "without a key description"},
		{"initrd file", func(c *Init) { c.Volumes = []Volume{{UUID: "v", Name: "n", Header: "h", Transport: Initrd}} }, "without a key file"},
		{"transport", func(c *Init) { c.Volumes = []Volume{{UUID: "v", Name: "n", Header: "h", Transport: "auto"}} }, "unknown transport"},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

// TestCoreCollector: a kdump.conf collector line keeps its meaning, codec
// for codec (-l was once read as snappy).
func TestCoreCollector(t *testing.T) {
	for line, want := range map[string]Dump{
		"makedumpfile -l --message-level 7 -d 23": {Level: 23, Compression: diskdump.LZO, Format: diskdump.KdumpFormat},
		"makedumpfile -c -d 31":                   {Level: 31, Compression: diskdump.Zlib, Format: diskdump.KdumpFormat},
		"makedumpfile -p -d 17":                   {Level: 17, Compression: diskdump.Snappy, Format: diskdump.KdumpFormat},
		"makedumpfile -z -d 1":                    {Level: 1, Compression: diskdump.Zstd, Format: diskdump.KdumpFormat},
		"makedumpfile -E -d 1":                    {Level: 1, Compression: diskdump.Snappy, Format: diskdump.ELFFormat},
		"makedumpfile -F --num-threads 2 -d 0":    {Level: 0, Compression: diskdump.Snappy, Format: diskdump.KdumpFormat},
	} {
		got, err := Parse(strings.NewReader("core_collector " + line + "\n"))
		if err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		if got.Dump != want {
			t.Errorf("%s: Dump = %+v, want %+v", line, got.Dump, want)
		}
	}
	if _, err := Parse(strings.NewReader("core_collector makedumpfile -d 40\n")); err == nil || !strings.Contains(err.Error(), `-d: "40" is not a dump level from 0 to 31`) {
		t.Errorf("bad -d: %v", err)
	}
}

// TestNoTarget: without a target line the file is valid; the target is
// found later, from path.
func TestNoTarget(t *testing.T) {
	got, err := Parse(strings.NewReader("path /var/crash/dumps\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got.HasTarget() || got.Path != "/var/crash/dumps" {
		t.Errorf("Parse = %+v, HasTarget %v", got, got.HasTarget())
	}
	got, err = Parse(strings.NewReader("xfs LABEL=dumps\n"))
	if err != nil || !got.HasTarget() {
		t.Errorf("with a target: %+v, %v", got, err)
	}
}

// TestInitDumpJSON: the dump settings travel to kdumpinit by name, and a
// name kdumpinit does not know is refused when read.
func TestInitDumpJSON(t *testing.T) {
	b, err := json.Marshal(Dump{Level: 31, Compression: diskdump.LZO, Format: diskdump.ELFFormat})
	if err != nil || string(b) != `{"level":31,"compression":"lzo","format":"elf"}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	var d Dump
	if err := json.Unmarshal([]byte(`{"level":1,"compression":"zstd","format":"kdump"}`), &d); err != nil || d.Compression != diskdump.Zstd {
		t.Errorf("Unmarshal = %+v, %v", d, err)
	}
	if err := json.Unmarshal([]byte(`{"compression":"lz4"}`), &d); err == nil {
		t.Error("unknown codec read")
	}
	// Scrubbing is the default, also for an Init that does not mention it.
	if b, err := json.Marshal(Dump{Level: 31, KeepKeys: true}); err != nil || !strings.Contains(string(b), `"keep_keys":true`) {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	d = Dump{}
	if err := json.Unmarshal([]byte(`{"level":1,"compression":"zstd","format":"kdump"}`), &d); err != nil || d.KeepKeys {
		t.Errorf("without keep_keys: %+v, %v", d, err)
	}
}

// TestREADMEDirectives holds README.md's table of kdump.conf directives to
// the parser: every directive ukdump takes and every one it refuses has a
// row, with the right verdict.
func TestREADMEDirectives(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.Lines(string(b)) {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		verdict := strings.TrimSpace(cells[2])
		if verdict != "supported" && verdict != "mapped" && verdict != "refused" {
			continue
		}
		for _, name := range strings.Split(strings.TrimSpace(cells[1]), ",") {
			rows[strings.Trim(strings.Fields(name)[0], "`")] = verdict
		}
	}
	want := map[string]string{"default": "mapped", "disk_timeout": "mapped", "core_collector": "mapped"}
	for _, fs := range FSTypes() {
		want[fs] = "supported"
	}
	for _, d := range directives() {
		if _, ok := want[d.name]; !ok && d.name != "target" {
			want[d.name] = "supported"
		}
	}
	for name := range refused() {
		want[name] = "refused"
	}
	for name, v := range want {
		if rows[name] != v {
			t.Errorf("README.md: directive %s is %q, want %q", name, rows[name], v)
		}
		delete(rows, name)
	}
	for name := range rows {
		t.Errorf("README.md lists %s, which Parse does not know", name)
	}
}

// TestDirectivesDocumented holds File's comment to the directive table:
// each directive has its line there, and there is no line for one that
// Parse does not know.
func TestDirectivesDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "conf.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	ast.Inspect(f, func(n ast.Node) bool {
		if g, ok := n.(*ast.GenDecl); ok && g.Tok == token.TYPE && g.Specs[0].(*ast.TypeSpec).Name.Name == "File" {
			doc = g.Doc.Text()
		}
		return doc == ""
	})
	// The example lines are the ones go/doc indents.
	documented := map[string]bool{}
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(line, "\t") {
			documented[strings.Join(strings.Fields(line), " ")] = true
		}
	}
	if len(documented) == 0 {
		t.Fatal("no directive lines in File's comment")
	}
	for _, d := range directives() {
		line := d.usage + " " + d.doc
		if !documented[line] {
			t.Errorf("File's comment lacks %q", line)
		}
		delete(documented, line)
		if d.name == "target" {
			continue // its usage shows three forms of device at once
		}
		// The example must parse, so that an administrator can copy it.
		if _, err := Parse(strings.NewReader("ext4 /dev/vda\n" + d.usage + "\n")); err != nil {
			t.Errorf("usage %q: %v", d.usage, err)
		}
	}
	for line := range documented {
		t.Errorf("File's comment has %q, which is no directive", line)
	}
}

// goodLVM is an LV striped over two PVs after a linear line.
func goodLVM() LVM {
	const pv0, pv1 = "gSSGCT-ZQ3g-0x2z-rEW3-Fmlk-qK7O-WyNjwx", "hEQyQ2-vNqI-RFTd-rdP4-6mLG-h0rz-cx4ccE"
	return LVM{VG: "my-vg", VGID: "at2EqU-IZJ4-0URS-qsrS-Rfa8-m5GM-n4jZ3R", LV: "root", LVID: "rbMpWv-4K1P-e701-c21K-8Ko5-1iGJ-pbm5iH",
		PVs: []string{pv0, pv1}, Seqno: 4,
		Table: []LVMTarget{
			{Start: 0, Length: 8192, Areas: []LVMArea{{PV: pv0, Offset: 2048}}},
			{Start: 8192, Length: 16384, ChunkSize: 128, Areas: []LVMArea{{PV: pv0, Offset: 10240}, {PV: pv1, Offset: 2048}}},
		}}
}

func TestLVMValidate(t *testing.T) {
	if err := goodLVM().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*LVM)
		want string
	}{
		{"vg name", func(l *LVM) { l.VG = "-vg" }, "not a VG/LV name"},
		{"lv name", func(l *LVM) { l.LV = "a/b" }, "not a VG/LV name"},
		{"vg id", func(l *LVM) { l.VGID = "at2EqUIZJ40URSqsrSRfa8m5GMn4jZ3R" }, "is not an lvm2 id"},
		{"pv id", func(l *LVM) { l.PVs[1] = "hEQyQ2-vNqI-RFTd-rdP4-6mLG-h0rz-cx4cc%" }, "PV id"},
		{"no pvs", func(l *LVM) { l.PVs = nil }, "needs its PVs and its table"},
		{"no table", func(l *LVM) { l.Table = nil }, "needs its PVs and its table"},
		{"gap", func(l *LVM) { l.Table[1].Start++ }, "line 2 covers 8193+16384"},
		{"striped without chunk", func(l *LVM) { l.Table[1].ChunkSize = 0 }, "2 areas with chunk size 0"},
		{"linear with chunk", func(l *LVM) { l.Table[0].ChunkSize = 8 }, "1 areas with chunk size 8"},
		{"foreign pv", func(l *LVM) { l.PVs = l.PVs[:1] }, "not among its PVs"},
	} {
		l := goodLVM()
		tc.edit(&l)
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	c := Init{Target: Target{FSType: "ext4", UUID: "u"}, Path: "/p", TargetTimeout: 1, FailureAction: Reboot, FinalAction: Reboot,
		Dump: Dump{Level: 31, Compression: diskdump.Zstd, Format: diskdump.KdumpFormat}, LVM: []LVM{goodLVM(), {VG: "vg0"}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `LVM "vg0/"`) {
		t.Errorf("Init with a bad LVM: %v", err)
	}
}
