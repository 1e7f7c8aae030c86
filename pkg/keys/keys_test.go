package keys

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func testDesc(t *testing.T) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "ukdump-test:" + hex.EncodeToString(b)
}

func TestKeyringRoundTrip(t *testing.T) {
	desc := testDesc(t)
	payload := []byte("0123456789abcdef0123456789abcdef")
	id, err := Add("user", desc, payload, ProcessKeyring)
	if err != nil {
		t.Skipf("no kernel keyring here: %v", err)
	}
	found, err := Find("user", desc)
	if err != nil || found != id {
		t.Fatalf("Find = %d, %v; want %d", found, err, id)
	}
	got, err := Read(id)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Read = %q, %v", got, err)
	}
	Wipe(got)
	if !bytes.Equal(got, make([]byte, len(payload))) {
		t.Error("Wipe left bytes")
	}
	if err := Invalidate(id); err != nil {
		t.Fatal(err)
	}
	if _, err := Find("user", desc); !errors.Is(err, ErrNoKey) {
		t.Errorf("invalidated key still found: %v", err)
	}
	// A logon key is found but cannot be read back.
	lid, err := Add("logon", desc, payload, ProcessKeyring)
	if err != nil {
		t.Fatal(err)
	}
	defer Invalidate(lid)
	if _, err := Find("logon", desc); err != nil {
		t.Errorf("logon key not found: %v", err)
	}
	if b, err := Read(lid); err == nil {
		t.Errorf("logon key read back: %x", b)
	}
}

func TestDescriptions(t *testing.T) {
	u := "0a1b2c3d-0000-4000-8000-000000000001"
	if Description(u) != "kdump-cryptsetup:vk-"+u || LegacyDescription(u) != "cryptsetup:"+u {
		t.Error("descriptions differ from systemd/kdump-utils convention")
	}
	if r := Reference(32, "user", Description(u)); r != ":32:user:kdump-cryptsetup:vk-"+u || !IsReference(r) {
		t.Errorf("Reference = %q", r)
	}
}

func TestIsReference(t *testing.T) {
	for s, want := range map[string]bool{
		":32:logon:ukdump:0a1b":             true,
		":64:user:kdump-cryptsetup:vk-0a1b": true,
		"00112233":                          false,
		"deadbeef":                          false,
		":32":                               false,
	} {
		if IsReference(s) != want {
			t.Errorf("IsReference(%q) = %v", s, !want)
		}
	}
}

// TestPBKDF2 checks the kernel-computed PBKDF2 against the standard library
// where the kernel offers AF_ALG with keys by serial (6.2+). The QEMU tests
// exercise it on the CRASH_DM_CRYPT kernel in any case.
func TestPBKDF2(t *testing.T) {
	desc := testDesc(t)
	key := []byte("a volume key of 32 bytes........")
	id, err := Add("logon", desc, key, ProcessKeyring)
	if err != nil {
		t.Skipf("no kernel keyring here: %v", err)
	}
	defer Invalidate(id)
	salt := []byte("salt-from-the-luks-header")
	got, err := PBKDF2(id, "sha256", salt, 1000, 32, 0)
	if errors.Is(err, ErrNoKernelHMAC) {
		t.Skipf("kernel lacks keyed AF_ALG hashes: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pbkdf2.Key(sha256.New, string(key), salt, 1000, 32)
	if !bytes.Equal(got, want) {
		t.Errorf("kernel PBKDF2 = %x, want %x", got, want)
	}
	if _, err := PBKDF2(id, "md5", salt, 1, 16, 0); err == nil {
		t.Error("md5 accepted")
	}
}

func TestCrashDM(t *testing.T) {
	c := CrashDM{Dir: filepath.Join(t.TempDir(), "crash_dm_crypt_keys")}
	if c.Available() {
		t.Fatal("missing dir reported available")
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(c.Dir, "count"), []byte("1\n"), 0o644)
	if !c.Available() {
		t.Fatal("dir not available")
	}
	items := map[string]string{"u1": Description("u1"), "u2": Description("u2")}
	if err := c.Set(items); err != nil {
		t.Fatal(err)
	}
	got, err := c.Items()
	sort.Strings(got)
	if err != nil || strings.Join(got, ",") != "u1,u2" {
		t.Errorf("Items = %v, %v (stale item must go)", got, err)
	}
	if b, _ := os.ReadFile(filepath.Join(c.Dir, "u2", "description")); string(b) != "kdump-cryptsetup:vk-u2" {
		t.Errorf("description = %q", b)
	}
	if n, err := c.Count(); err != nil || n != 1 {
		t.Errorf("Count = %d, %v", n, err)
	}
	if err := c.Reuse(true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(c.Dir, "reuse")); string(b) != "1" {
		t.Errorf("reuse = %q", b)
	}
	if err := c.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := (CrashDM{Dir: "/nonexistent"}).Restore(); err == nil {
		t.Error("Restore without configfs succeeded")
	}
}
