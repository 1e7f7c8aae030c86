package bzimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukdump/ukdump/pkg/bzimage/bzimagetest"
)

// TestHeaderLayout: the struct lays its fields where the boot protocol
// puts them.
func TestHeaderLayout(t *testing.T) {
	if n := binary.Size(SetupHeader{}); HeaderOffset+n != 0x26c {
		t.Fatalf("setup header ends at %#x, want 0x26c", HeaderOffset+n)
	}
}

func synthetic(version uint16, initSize uint32, release string) []byte {
	return bzimagetest.Image(version, initSize, release)
}

func TestRead(t *testing.T) {
	img, err := Read(bytes.NewReader(synthetic(0x020f, 60<<20, "7.3.0-test")))
	if err != nil {
		t.Fatal(err)
	}
	if img.Header.InitSize != 60<<20 || img.Release != "7.3.0-test" || img.Header.Version != 0x020f {
		t.Errorf("Read = %+v", img)
	}
	img, err = Read(bytes.NewReader(synthetic(0x020a, 1<<20, "")))
	if err != nil || img.Release != "" {
		t.Errorf("without a version string: %+v, %v", img, err)
	}
	for name, b := range map[string][]byte{
		"old protocol": synthetic(0x0209, 1, ""),
		"ELF vmlinux":  append([]byte("\x7fELF"), make([]byte, 4096)...),
		"short":        []byte("MZ"),
		"no boot flag": func() []byte { b := synthetic(0x020f, 1, ""); b[0x1fe] = 0; return b }(),
	} {
		if _, err := Read(bytes.NewReader(b)); !errors.Is(err, ErrNotBzImage) {
			t.Errorf("%s: Read error = %v, want ErrNotBzImage", name, err)
		}
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadFile of a missing file succeeded")
	}
}

// TestReadDebian reads the Debian 12 kernel that the QEMU tests fetch
// (testdata/kernel/fetch-debian.sh), when it is in the cache.
func TestReadDebian(t *testing.T) {
	home, _ := os.UserHomeDir()
	cache := os.Getenv("UKDUMP_CACHE")
	if cache == "" {
		cache = filepath.Join(home, ".cache", "ukdump")
	}
	images, _ := filepath.Glob(filepath.Join(cache, "kernels", "linux-image-6.1.0-*-cloud-amd64_*", "root", "boot", "vmlinuz-*"))
	if len(images) == 0 {
		t.Skip("no Debian 12 kernel in the cache (testdata/kernel/fetch-debian.sh)")
	}
	img, err := ReadFile(images[0])
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	// Debian 12's cloud kernel needs about 51 MiB to boot.
	if img.Release != want || img.Header.InitSize < 40<<20 || img.Header.InitSize > 80<<20 {
		t.Errorf("%s: release %q (want %q), init_size %d MiB", images[0], img.Release, want, img.Header.InitSize>>20)
	}
	t.Logf("%s: release %s, protocol %#x, init_size %.1f MiB", images[0], img.Release, img.Header.Version, float64(img.Header.InitSize)/(1<<20))
}
