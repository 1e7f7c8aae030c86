package unlock

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukdump/ukdump/pkg/blockdev"
	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/kmsg"
	"github.com/ukdump/ukdump/pkg/luks"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
	"github.com/ukdump/ukdump/pkg/scrub"
)

func TestObtainInitrdScrubsTheFile(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	name := filepath.Join(t.TempDir(), "v.key")
	if err := os.WriteFile(name, key, 0o400); err != nil {
		t.Fatal(err)
	}
	got, err := obtain(config.Volume{UUID: "u", Transport: config.Initrd, KeyFile: name})
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("obtain = %x, %v", got, err)
	}
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file left in the initramfs: %v", err)
	}
	if _, err := obtain(config.Volume{UUID: "u", Transport: config.Initrd, KeyFile: name}); err == nil ||
		!strings.Contains(err.Error(), "keys are added only by \"ukdump load\"") {
		t.Errorf("missing key file: %v", err)
	}
}

func TestObtainKernelWithoutKey(t *testing.T) {
	_, err := obtain(config.Volume{UUID: "u", Transport: config.Kernel, KeyDesc: "ukdump-test:absent"})
	if err == nil || !strings.Contains(err.Error(), "handed over no key") {
		t.Errorf("absent restored key: %v", err)
	}
}

func TestCloseRemovesNothingWhenEmpty(t *testing.T) {
	if err := (&Opened{}).Close(); err != nil {
		t.Error(err)
	}
}

// TestOpenFailureScrubsEveryKey: when unlocking fails (here: no
// device-mapper in the fake system), the key files of every volume are
// overwritten and removed, not only the first one's.
func TestOpenFailureScrubsEveryKey(t *testing.T) {
	dir := t.TempDir()
	var vols []config.Volume
	for _, n := range []string{"a", "b"} {
		name := filepath.Join(dir, n+".key")
		if err := os.WriteFile(name, bytes.Repeat([]byte{9}, 64), 0o400); err != nil {
			t.Fatal(err)
		}
		vols = append(vols, config.Volume{UUID: n, Name: n, Header: "h", Transport: config.Initrd, KeyFile: name})
	}
	sys := blockdev.Sys{SysDir: filepath.Join(dir, "sys"), DevDir: filepath.Join(dir, "dev")}
	_, err := Open(context.Background(), vols, 100*time.Millisecond, Env{Log: kmsg.New(io.Discard, nil, "test"), Sys: sys})
	if err == nil {
		t.Fatal("Open succeeded without device-mapper or devices")
	}
	for _, v := range vols {
		if _, err := os.Stat(v.KeyFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after a failed Open: %v", v.KeyFile, err)
		}
	}
}

// luksVolume makes a fake system with a LUKS2 device vdb (cryptsetup's
// format, aes-xts-plain64) and its key in an initramfs key file.
func luksVolume(t *testing.T) (blockdev.Sys, config.Volume, []byte, *luks.Header) {
	t.Helper()
	dir := t.TempDir()
	sys := blockdev.Sys{SysDir: filepath.Join(dir, "sys"), DevDir: filepath.Join(dir, "dev")}
	for _, d := range []string{filepath.Join(sys.SysDir, "class", "block", "vdb"), sys.DevDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sys.SysDir, "class", "block", "vdb", "size"), []byte("40960\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	key, h := lukstest.Format(t, filepath.Join(sys.DevDir, "vdb"), 20<<20, lukstest.Options{})
	keyFile := filepath.Join(dir, "vdb.key")
	if err := os.WriteFile(keyFile, key, 0o400); err != nil {
		t.Fatal(err)
	}
	v := config.Volume{UUID: h.UUID, Name: "crypt", Transport: config.Initrd, KeyFile: keyFile, Header: h.Fingerprint()}
	return sys, v, key, h
}

// TestOpenRefusesChangedHeader: a header that differs from the one the
// first kernel checked (here: any other fingerprint) is refused before a
// digest is computed with it, and the handed-over key is still scrubbed.
func TestOpenRefusesChangedHeader(t *testing.T) {
	sys, v, _, _ := luksVolume(t)
	v.Header = "sha256:" + strings.Repeat("0", 64)
	keyFile := v.KeyFile
	keep := &scrub.Keys{}
	err := open(context.Background(), v, time.Second, Env{Log: kmsg.New(io.Discard, nil, "test"), Sys: sys, Keep: keep})
	if err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("open = %v, want a refusal of the changed header", err)
	}
	if err := scrubAll([]config.Volume{v}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file left behind: %v", err)
	}
	if keep.Len() != 0 {
		t.Error("a key was kept for a refused header")
	}
}

// TestCheckedKeepsTheKey: a key that opens its header is handed to
// Env.Keep, a copy with the volume's cipher spec; a key that does not is
// not kept, and no copy of either is left in the key file. (open itself
// needs device-mapper, which a unit test must not touch.)
func TestCheckedKeepsTheKey(t *testing.T) {
	_, v, key, h := luksVolume(t)
	keep := &scrub.Keys{}
	env := Env{Log: kmsg.New(io.Discard, nil, "test"), Keep: keep}
	got, err := checked(v, h, "aes-xts-plain64", "/dev/vdb", env)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("checked = %v", err)
	}
	kept := keep.Volumes()
	if len(kept) != 1 || kept[0].Cipher != "aes-xts-plain64" || !bytes.Equal(kept[0].Key, key) || &kept[0].Key[0] == &got[0] {
		t.Fatalf("kept %d keys, not a copy of the key with its cipher", len(kept))
	}
	if _, err := os.Stat(v.KeyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file left behind: %v", err)
	}
	// A wrong key: refused and not kept.
	wrong := bytes.Clone(key)
	wrong[0] ^= 1
	if err := os.WriteFile(v.KeyFile, wrong, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := checked(v, h, "aes-xts-plain64", "/dev/vdb", env); err == nil || !strings.Contains(err.Error(), "does not open /dev/vdb") {
		t.Errorf("wrong key: %v", err)
	}
	if keep.Len() != 1 {
		t.Errorf("%d keys kept after a wrong one", keep.Len())
	}
	// Without Keep, nothing is kept (scrub_keys no).
	if err := os.WriteFile(v.KeyFile, key, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := checked(v, h, "aes-xts-plain64", "/dev/vdb", Env{Log: env.Log}); err != nil || keep.Len() != 1 {
		t.Fatalf("without Keep: %v, %d keys kept", err, keep.Len())
	}
	keep.Wipe()
	if !bytes.Equal(kept[0].Key, make([]byte, len(key))) {
		t.Error("Wipe left the kept key")
	}
}
