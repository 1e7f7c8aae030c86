package loader

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ukdump/ukdump/pkg/armimage"
)

// TestKernelImageARM64 reads a gzip-compressed arm64 Image (Ubuntu's
// vmlinuz): its size and release from the unpacked header and banner, and
// the unpacked Image in a memfd for kexec_file_load.
func TestKernelImageARM64(t *testing.T) {
	plain := make([]byte, 4096)
	h := armimage.Header{TextOffset: 0, ImageSize: 40 << 20, Flags: 2, Magic: armimage.Magic}
	if _, err := binary.Encode(plain, binary.LittleEndian, &h); err != nil {
		t.Fatal(err)
	}
	copy(plain[2000:], "Linux version 6.8.0-49-generic (buildd@bos03) #49\x00")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	name := filepath.Join(t.TempDir(), "vmlinuz-6.8.0-49-generic")
	if err := os.WriteFile(name, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := readKernel(name)
	if err != nil {
		t.Fatal(err)
	}
	if k.LoadSize != 40<<20 || k.Release != "6.8.0-49-generic" || k.SizeTerm != "arm64 Image image_size, unpacked from Image.gz" {
		t.Errorf("readKernel: %+v", k)
	}
	f, err := openKernel(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("the memfd holds %d bytes (%v), want the %d-byte unpacked Image", len(got), err, len(plain))
	}
	if _, err := readKernel(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("readKernel of a missing file: no error")
	}
}

// TestInstalled: a kernel's files in /boot, or beside its modules where
// Debian's 7.x packages and Fedora's kernel-core put them; /boot first.
func TestInstalled(t *testing.T) {
	const rel = "7.3.4+deb13-cloud-amd64"
	root := t.TempDir()
	touch := func(name string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if k := Installed(root, rel); k.Image != "/boot/vmlinuz-"+rel || k.Config != "/boot/config-"+rel || k.Modules != "/lib/modules/"+rel {
		t.Errorf("nothing installed: %+v, want the /boot names for the error", k)
	}
	touch("usr/lib/modules/" + rel + "/vmlinuz")
	touch("usr/lib/modules/" + rel + "/config")
	want := InstalledKernel{Image: "/usr/lib/modules/" + rel + "/vmlinuz", Config: "/usr/lib/modules/" + rel + "/config", Modules: "/usr/lib/modules/" + rel}
	if k := Installed(root, rel); k != want {
		t.Errorf("7.x package layout: %+v, want %+v", k, want)
	}
	touch("boot/vmlinuz-" + rel)
	touch("boot/config-" + rel)
	touch("lib/modules/" + rel + "/modules.dep")
	want = InstalledKernel{Image: "/boot/vmlinuz-" + rel, Config: "/boot/config-" + rel, Modules: "/lib/modules/" + rel}
	if k := Installed(root, rel); k != want {
		t.Errorf("both: %+v, want %+v", k, want)
	}
}
