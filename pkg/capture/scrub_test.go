package capture

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/internal/qemuuser"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/diskdump"
	"github.com/ukdump/ukdump/pkg/scrub"
)

// scrubFixture is the fixture of TestRun with one LUKS volume under the
// target, its key kept by unlocking, and the key and its schedules planted
// in the memory: the key in pfn 0, the first half's encryption schedule
// across pfns 0 and 1, the second half's decryption schedule in pfn 2.
func scrubFixture(t *testing.T) (*fixture, []byte, []scrub.Secret) {
	t.Helper()
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(51, 52))
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(rng.Uint32())
	}
	secrets, err := scrub.Derive(scrub.Volume{Cipher: "aes-xts-plain64", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	mem := memory()
	copy(mem[100:], secrets[0].Bytes)      // the key
	copy(mem[4096-50:], secrets[3].Bytes)  // enc of the first half
	copy(mem[2*4096+8:], secrets[6].Bytes) // dec of the second half
	writeCore(t, f.env.Vmcore, crashInfo, mem)
	f.cfg.Volumes = []config.Volume{{UUID: "v", Name: "crypt", Transport: config.Initrd, KeyFile: "/k", Header: "h"}}
	f.env.Keys = &scrub.Keys{}
	f.env.Keys.Add("aes-xts-plain64", key)
	return f, key, secrets
}

// dumpMemory reads the three pages of the dump Run wrote.
func dumpMemory(t *testing.T, f *fixture, res *Result) []byte {
	t.Helper()
	d, err := diskdump.OpenFile(filepath.Join(f.env.MountDir, res.Dir, "vmcore"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mem := make([]byte, 3*4096)
	for pfn := range 3 {
		if err := d.ReadPage(uint64(pfn), mem[pfn*4096:]); err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

// TestRunScrubs: the dump holds none of the planted secrets, the console
// and scrub.txt give the counts (and never a key), and the kept keys are
// wiped once Run returns.
func TestRunScrubs(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	f, key, secrets := scrubFixture(t)
	kept := f.env.Keys.Volumes()[0].Key
	res, err := Run(t.Context(), f.cfg, f.env)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, f.log)
	}
	mem := dumpMemory(t, f, res)
	for _, s := range secrets {
		if bytes.Contains(mem, s.Bytes) {
			t.Errorf("the dump holds a %s", s.Kind)
		}
	}
	if !bytes.Equal(kept, make([]byte, len(key))) || f.env.Keys.Len() != 0 {
		t.Error("the kept key was not wiped")
	}
	report, err := os.ReadFile(filepath.Join(f.env.MountDir, res.Dir, ScrubFile))
	if err != nil {
		t.Fatal(err)
	}
	want := "scrub_keys yes\nvolumes 1\npatterns 7\nkey 1\nhalf 0\nsalt 0\nenc 1\ndec 1\npartial 0\n"
	if !strings.HasSuffix(string(report), want) || !strings.HasPrefix(string(report), "# ") {
		t.Errorf("%s:\n%s\nwant it to end with\n%s", ScrubFile, report, want)
	}
	for _, line := range []string{
		"scrubbing the keys of 1 LUKS volume from the dump (7 byte strings)",
		"scrubbed from the dump: key 1, half 0, salt 0, enc 1, dec 1, partial 0",
	} {
		if !strings.Contains(f.log.String(), line) {
			t.Errorf("log lacks %q:\n%s", line, f.log)
		}
	}
	for _, out := range [][]byte{report, f.log.Bytes()} {
		if bytes.Contains(out, key[:8]) || strings.Contains(string(out), hex.EncodeToString(key[:8])) {
			t.Error("key bytes in the report or the log")
		}
	}
}

// TestRunKeepsKeys: with scrub_keys no the planted secrets stay, and
// scrub.txt says so.
func TestRunKeepsKeys(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	f, _, secrets := scrubFixture(t)
	f.cfg.Dump.KeepKeys = true
	res, err := Run(t.Context(), f.cfg, f.env)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, f.log)
	}
	mem := dumpMemory(t, f, res)
	for _, i := range []int{0, 3, 6} {
		if !bytes.Contains(mem, secrets[i].Bytes) {
			t.Errorf("scrub_keys no: the planted %s is not in the dump", secrets[i].Kind)
		}
	}
	report, err := os.ReadFile(filepath.Join(f.env.MountDir, res.Dir, ScrubFile))
	if err != nil || !strings.HasSuffix(string(report), "\nscrub_keys no\nvolumes 1\n") {
		t.Errorf("%s: %q, %v", ScrubFile, report, err)
	}
	if !strings.Contains(f.log.String(), "scrub_keys no: the keys of 1 LUKS volume stay in the dump") {
		t.Errorf("log:\n%s", f.log)
	}
}

// TestRunScrubFailureStillDumps: keys that do not match the volumes (a
// bug) leave the dump unscrubbed, written, and scrub.txt says why.
func TestRunScrubFailureStillDumps(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	f, _, _ := scrubFixture(t)
	f.env.Keys.Wipe()
	res, err := Run(t.Context(), f.cfg, f.env)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	report, err := os.ReadFile(filepath.Join(f.env.MountDir, res.Dir, ScrubFile))
	if err != nil || !strings.HasSuffix(string(report), "scrub_keys yes\nvolumes 1\nerror 0 keys kept for 1 LUKS volume\n") {
		t.Errorf("%s: %q, %v", ScrubFile, report, err)
	}
	if !strings.Contains(f.log.String(), "warning: not scrubbing the volume keys from the dump: 0 keys kept for 1 LUKS volume") {
		t.Errorf("log:\n%s", f.log)
	}
}

// TestRunWithoutVolumesHasNoScrubFile: a plain target gets no scrub.txt.
func TestRunWithoutVolumesHasNoScrubFile(t *testing.T) {
	qemuuser.SkipWithoutOpenat2(t)
	f := newFixture(t)
	res, err := Run(t.Context(), f.cfg, f.env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.env.MountDir, res.Dir, ScrubFile)); !os.IsNotExist(err) {
		t.Errorf("%s on a plain target: %v", ScrubFile, err)
	}
}
