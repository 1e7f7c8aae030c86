package loader

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/config"
	"github.com/ukdump/ukdump/pkg/keyslot"
	"github.com/ukdump/ukdump/pkg/loader/loadertest"
	"github.com/ukdump/ukdump/pkg/luks/lukstest"
)

// TestPassphrasesKeyFile: one key file serves every volume (standard input
// could be read only once: the second volume once got an empty
// passphrase), and wipe clears it.
func TestPassphrasesKeyFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(name, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &passphrases{o: KeyOptions{KeyFile: name}}
	a, err := p.get(Volume{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(name); err != nil { // a second read would fail now
		t.Fatal(err)
	}
	b, err := p.get(Volume{Name: "b"})
	if err != nil || string(a) != "s3cret\n" || string(b) != "s3cret\n" {
		t.Fatalf("get = %q, %q, %v; want s3cret and its newline twice", a, b, err)
	}
	p.wipe()
	if !bytes.Equal(a, make([]byte, len(a))) {
		t.Errorf("passphrase not wiped: %q", a)
	}
}

func TestPassphrasesPrompt(t *testing.T) {
	var asked []string
	p := &passphrases{o: KeyOptions{Prompt: func(v Volume) ([]byte, error) {
		asked = append(asked, v.Name)
		return []byte("pw-" + v.Name), nil
	}}}
	a, _ := p.get(Volume{Name: "a"})
	b, _ := p.get(Volume{Name: "b"})
	if string(a) != "pw-a" || string(b) != "pw-b" || strings.Join(asked, ",") != "a,b" {
		t.Fatalf("prompt answers %q %q, asked %v", a, b, asked)
	}
	p.wipe()
	if !bytes.Equal(a, make([]byte, len(a))) || !bytes.Equal(b, make([]byte, len(b))) {
		t.Errorf("answers not wiped: %q %q", a, b)
	}
	if _, err := (&passphrases{}).get(Volume{}); err == nil {
		t.Error("no source gave a passphrase")
	}
}

// TestKeyFileAsCryptsetup: a key file is read as cryptsetup --key-file
// reads it, every byte the passphrase: one made with echo (a final
// newline) opens a volume whose passphrase has that newline, and one
// without it fails with a hint. Real cryptsetup makes the volume and
// says which file opens it.
func TestKeyFileAsCryptsetup(t *testing.T) {
	cs := lukstest.Cryptsetup(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "vol.img")
	key, h := lukstest.Format(t, img, 20<<20, lukstest.Options{Passphrase: "s3cret\n"})
	echoed, printed := filepath.Join(dir, "echoed"), filepath.Join(dir, "printed")
	if err := os.WriteFile(echoed, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(printed, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// What cryptsetup itself does with each file.
	for file, opens := range map[string]bool{echoed: true, printed: false} {
		err := exec.Command(cs, "open", "--test-passphrase", "--key-file", file, img).Run()
		if (err == nil) != opens {
			t.Fatalf("cryptsetup --key-file %s: %v, want opens=%v", file, err, opens)
		}
	}
	v := Volume{UUID: h.UUID, Name: "vol", Backing: img, Header: h}
	find := func(file string) (*Key, error) {
		o := KeyOptions{KeyFile: file, Log: io.Discard, Store: &loadertest.Keys{}}
		o.pass = &passphrases{o: o}
		defer o.pass.wipe()
		return findKey(v, config.Initrd, o)
	}
	k, err := find(echoed)
	if err != nil || !bytes.Equal(k.Bytes, key) || k.From != FromPassphrase {
		t.Fatalf("the key file cryptsetup opens with: %+v, %v", k, err)
	}
	k.Wipe()
	if _, err := find(printed); err == nil || !errors.Is(err, keyslot.ErrNoKeyslot) {
		t.Fatalf("the key file cryptsetup refuses: %v, want ErrNoKeyslot", err)
	}
	// The other way round: a passphrase without a newline, a file with one.
	img2 := filepath.Join(dir, "vol2.img")
	_, h2 := lukstest.Format(t, img2, 20<<20, lukstest.Options{Passphrase: "s3cret"})
	v = Volume{UUID: h2.UUID, Name: "vol2", Backing: img2, Header: h2}
	if _, err := find(echoed); err == nil || !strings.Contains(err.Error(), "the key file ends with a newline, which is part of the passphrase") {
		t.Errorf("a key file with a newline too many: %v, want the hint", err)
	}
}
