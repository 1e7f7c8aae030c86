package loader

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if err != nil || string(a) != "s3cret" || string(b) != "s3cret" {
		t.Fatalf("get = %q, %q, %v; want s3cret twice", a, b, err)
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
