package unlock

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/config"
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
