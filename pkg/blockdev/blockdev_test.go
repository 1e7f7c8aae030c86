package blockdev

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var rawUUID = []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}

const textUUID = "12345678-9abc-def0-0123-456789abcdef"

func image(size int, edits func(b []byte)) []byte {
	b := make([]byte, size)
	edits(b)
	return b
}

// lvmLabel writes an LVM2 label as pvcreate does, in sector s of b.
func lvmLabel(b []byte, s int) {
	l := b[s*512 : (s+1)*512]
	copy(l, "LABELONE")
	binary.LittleEndian.PutUint64(l[8:], uint64(s))
	binary.LittleEndian.PutUint32(l[20:], 32)
	copy(l[24:], "LVM2 001")
	copy(l[32:], "gSSGCTZQ3g0x2zrEW3FmlkqK7OWyNjwx")
	binary.LittleEndian.PutUint64(l[72:], 1<<20)
	binary.LittleEndian.PutUint32(l[16:], ^crc32.Update(^uint32(0xf597a6cf), crc32.IEEETable, l[20:]))
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  []byte
		want Info
		err  error
	}{
		{"ext", image(4096, func(b []byte) {
			binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53)
			copy(b[1024+104:], rawUUID)
			copy(b[1024+120:], "root")
		}), Info{"ext4", textUUID, "root"}, nil},
		{"xfs", image(4096, func(b []byte) {
			copy(b, "XFSB")
			copy(b[32:], rawUUID)
			copy(b[108:], "data")
		}), Info{"xfs", textUUID, "data"}, nil},
		{"btrfs", image(128<<10, func(b []byte) {
			copy(b[64<<10+64:], "_BHRfS_M")
			copy(b[64<<10+32:], rawUUID)
			copy(b[64<<10+299:], "pool")
		}), Info{"btrfs", textUUID, "pool"}, nil},
		{"luks2", image(4096, func(b []byte) {
			copy(b, "LUKS\xba\xbe\x00\x02")
			copy(b[24:], "secret-disk")
			copy(b[168:], textUUID)
		}), Info{"crypto_LUKS", textUUID, "secret-disk"}, nil},
		{"luks1 has no label", image(4096, func(b []byte) {
			copy(b, "LUKS\xba\xbe\x00\x01")
			copy(b[24:], "cbc-essiv")
			copy(b[168:], textUUID)
		}), Info{"crypto_LUKS", textUUID, ""}, nil},
		{"lvm2", image(4096, func(b []byte) { lvmLabel(b, 1) }), Info{Type: LVM2Member, UUID: "gSSGCT-ZQ3g-0x2z-rEW3-Fmlk-qK7O-WyNjwx"}, nil},
		{"lvm2 at sector 3", image(4096, func(b []byte) { lvmLabel(b, 3) }), Info{Type: LVM2Member, UUID: "gSSGCT-ZQ3g-0x2z-rEW3-Fmlk-qK7O-WyNjwx"}, nil},
		{"lvm2 bad checksum", image(4096, func(b []byte) { lvmLabel(b, 1); b[512+100] ^= 1 }), Info{}, ErrUnknown},
		{"lvm2 label for another sector", image(4096, func(b []byte) { lvmLabel(b, 1); copy(b, b[512:1024]); clear(b[512:1024]) }), Info{}, ErrUnknown},
		{"ext4 over a stale lvm2 label", image(4096, func(b []byte) {
			lvmLabel(b, 1)
			binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53)
			copy(b[1024+104:], rawUUID)
		}), Info{"ext4", textUUID, ""}, nil},
		{"zeros", make([]byte, 1<<20), Info{}, ErrUnknown},
		{"tiny", []byte("LUKS"), Info{}, ErrUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Probe(bytes.NewReader(tc.img))
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("Probe = %+v, %v; want %+v, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// TestProbeMkfs checks the ext offsets against a filesystem made by mkfs.ext4.
func TestProbeMkfs(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-U", textUUID, "-L", "dumps", img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	got, err := ProbePath(img)
	if want := (Info{"ext4", textUUID, "dumps"}); err != nil || got != want {
		t.Errorf("ProbePath = %+v, %v; want %+v", got, err, want)
	}
}

// fakeSys builds a sysfs with vda (virtio) holding vda1, and dm-0 on vda2.
func fakeSys(t *testing.T) Sys {
	t.Helper()
	root := t.TempDir()
	s := Sys{SysDir: filepath.Join(root, "sys"), DevDir: filepath.Join(root, "dev")}
	mk := func(p, content string) {
		p = filepath.Join(s.SysDir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		p = filepath.Join(s.SysDir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	pci := "devices/pci0000:00/0000:00:04.0"
	mk(pci+"/virtio1/block/vda/size", "8192\n")
	mk(pci+"/virtio1/block/vda/vda1/partition", "1\n")
	mk(pci+"/virtio1/block/vda/vda1/size", "4096\n")
	mk(pci+"/virtio1/block/vda/vda2/partition", "2\n")
	mk(pci+"/virtio1/block/vda/vda2/size", "4096\n")
	mk("devices/virtual/block/dm-0/size", "4000\n")
	mk("devices/virtual/block/loop0/size", "0\n")
	mk("module/virtio_blk/refcnt", "1\n")
	mk("module/virtio_pci/refcnt", "1\n")
	link("../../../../module/virtio_blk", "bus/virtio/drivers/virtio_blk/module")
	link("../../../../module/virtio_pci", "bus/pci/drivers/virtio-pci/module")
	link("../../../../bus/virtio/drivers/virtio_blk", pci+"/virtio1/driver")
	link("../../../bus/pci/drivers/virtio-pci", pci+"/driver")
	link("../../../../../../../"+pci+"/virtio1/block/vda/vda2", "devices/virtual/block/dm-0/slaves/vda2")
	for _, n := range []string{"vda", "vda/vda1", "vda/vda2"} {
		link("../../"+pci+"/virtio1/block/"+n, "class/block/"+filepath.Base(n))
	}
	link("../../devices/virtual/block/dm-0", "class/block/dm-0")
	link("../../devices/virtual/block/loop0", "class/block/loop0")
	mk("devices/virtual/block/dm-0/dev", "253:0\n")
	mk(pci+"/virtio1/block/vda/vda1/dev", "252:1\n")
	link("../../devices/virtual/block/dm-0", "dev/block/253:0")
	link("../../"+pci+"/virtio1/block/vda/vda1", "dev/block/252:1")
	if err := os.MkdirAll(s.DevDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vda", "vda1", "vda2", "dm-0"} {
		if err := os.WriteFile(filepath.Join(s.DevDir, n), make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// writeExt puts an ext4 superblock labelled label on the device name.
// It returns the error rather than failing the test, so that a goroutine
// can call it: t.Fatal must run on the test's own goroutine.
func writeExt(s Sys, name, label string) error {
	img := image(4096, func(b []byte) {
		binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53)
		copy(b[1024+104:], rawUUID)
		copy(b[1024+120:], label)
	})
	return os.WriteFile(filepath.Join(s.DevDir, name), img, 0o644)
}

func TestStackAndModules(t *testing.T) {
	s := fakeSys(t)
	for _, tc := range []struct {
		dev   string
		stack string
		mods  string
	}{
		{"vda", "vda", "virtio_blk virtio_pci"},
		{"vda1", "vda1 vda", "virtio_blk virtio_pci"},
		{"dm-0", "dm-0 vda2 vda", "virtio_blk virtio_pci"},
	} {
		stack, err := s.Stack(tc.dev)
		if err != nil || strings.Join(stack, " ") != tc.stack {
			t.Errorf("Stack(%s) = %v, %v; want %s", tc.dev, stack, err, tc.stack)
		}
		mods, err := s.Modules(tc.dev)
		if err != nil || strings.Join(mods, " ") != tc.mods {
			t.Errorf("Modules(%s) = %v, %v; want %s", tc.dev, mods, err, tc.mods)
		}
	}
	if _, err := s.Stack("nvme0n1"); err == nil {
		t.Error("Stack of a missing device succeeded")
	}
}

func TestFindAndResolve(t *testing.T) {
	s := fakeSys(t)
	if err := writeExt(s, "dm-0", "crash"); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"UUID=" + textUUID, "UUID=" + strings.ToUpper(textUUID), "LABEL=crash"} {
		d, info, err := s.Resolve(spec)
		if err != nil || d.Name != "dm-0" || info.Type != "ext4" {
			t.Errorf("Resolve(%s) = %+v %+v %v", spec, d, info, err)
		}
	}
	for _, spec := range []string{"UUID=00000000-0000-0000-0000-000000000000", "LABEL=nope"} {
		if _, _, err := s.Resolve(spec); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), spec) {
			t.Errorf("Resolve(%s) error = %v, want ErrNotFound naming the spec", spec, err)
		}
	}
	if _, _, err := s.Resolve(filepath.Join(s.DevDir, "vda1")); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("Resolve of a regular file: %v", err)
	}
}

func TestWait(t *testing.T) {
	s := fakeSys(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := s.Wait(ctx, ByLabel("late"), 10*time.Millisecond); !errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait for a device that never comes: %v", err)
	}
	written := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		written <- writeExt(s, "vda1", "late")
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, _, err := s.Wait(ctx, ByLabel("late"), 10*time.Millisecond)
	if werr := <-written; werr != nil {
		t.Fatalf("writing the late device: %v", werr)
	}
	if err != nil || d.Name != "vda1" {
		t.Errorf("Wait = %+v, %v; want vda1", d, err)
	}
}

// TestByNumber: the device numbers of mountinfo lead to the sysfs name and
// back.
func TestByNumber(t *testing.T) {
	s := fakeSys(t)
	for name, num := range map[string][2]uint32{"dm-0": {253, 0}, "vda1": {252, 1}} {
		d, err := s.ByNumber(num[0], num[1])
		if err != nil || d.Name != name || d.Path != filepath.Join(s.DevDir, name) {
			t.Errorf("ByNumber(%d:%d) = %+v, %v; want %s", num[0], num[1], d, err, name)
		}
		maj, min, err := s.Number(name)
		if err != nil || maj != num[0] || min != num[1] {
			t.Errorf("Number(%s) = %d:%d, %v", name, maj, min, err)
		}
	}
	if _, err := s.ByNumber(0, 21); err == nil || !strings.Contains(err.Error(), "0:21 is not a block device") {
		t.Errorf("ByNumber(0:21) = %v", err)
	}
	if _, _, err := s.Number("vda"); err == nil {
		t.Error("Number of a device without dev succeeded")
	}
}

func TestSize(t *testing.T) {
	s := fakeSys(t)
	if n, err := s.Size("dm-0"); err != nil || n != 4000*512 {
		t.Errorf("Size(dm-0) = %d, %v", n, err)
	}
	if _, err := s.Size("vdz"); err == nil {
		t.Error("Size of a missing device")
	}
	if err := os.WriteFile(filepath.Join(s.SysDir, "devices/virtual/block/dm-0/size"), []byte("lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Size("dm-0"); err == nil || !strings.Contains(err.Error(), "not a number of sectors") {
		t.Errorf("Size of a bad size file: %v", err)
	}
}
