package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBenchVmcore makes the benchmark's input: the ELF vmcore of a 1.25 GiB
// guest that filled its page cache, holds anonymous memory of mixed content
// and left the rest free. It runs only when UKDUMP_BENCH_VMCORE names the
// file to write (make bench sets it), and does nothing when it exists.
func TestBenchVmcore(t *testing.T) {
	dst := os.Getenv("UKDUMP_BENCH_VMCORE")
	if dst == "" {
		t.Skip("UKDUMP_BENCH_VMCORE not set")
	}
	if _, err := os.Stat(dst); err == nil {
		t.Skipf("%s exists", dst)
	}
	requireTools(t, hostTools...)
	k := testKernel(t)
	dir := outDir(t)
	disk, uuid := fillDisk(t, dir, 384, 2600)
	marker := randomHex(8)
	c := runCycle(t, dir, cycleOptions{
		Kernel:      k,
		Conf:        "ext4 UUID=" + uuid + "\n" + benchConf,
		Disks:       []string{disk},
		MemoryMiB:   1280,
		CrashKernel: "192M",
		Params:      "ukdump.marker=" + marker + " ukdump.fill=1 ukdump.anon=384",
		Timeout:     10 * time.Minute,
		Modules:     []string{"virtio_pci", "virtio_blk"},
	})
	vmcore, _, _ := verifyDump(t, dir, disk, c, marker)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(vmcore, dst); err != nil {
		t.Fatal(err)
	}
	os.Remove(disk)
	t.Logf("benchmark vmcore: %s", dst)
}

// fillDisk makes the disk the guest fills its page cache from: ext4 of
// diskMiB holding bench/pagecache.bin, cacheMiB of mixed content.
func fillDisk(t *testing.T, dir string, cacheMiB, diskMiB int) (disk, uuid string) {
	t.Helper()
	src := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(src, "bench"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeMixedFile(t, filepath.Join(src, "bench", "pagecache.bin"), int64(cacheMiB)<<20)
	uuid = newUUID()
	disk = filepath.Join(dir, "disk.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-U", uuid, "-d", src, disk, fmt.Sprintf("%dM", diskMiB)).CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	os.RemoveAll(src)
	return disk, uuid
}

// benchConf makes kdumpinit keep the whole memory as ELF.
const benchConf = "format elf\ndump_level 0\n"

// writeMixedFile writes size bytes of mostly text-like content with some
// random and zero blocks, as files on a server hold.
func writeMixedFile(t *testing.T, name string, size int64) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	block := make([]byte, 4096)
	line := []byte("2026-11-26T04:05:06Z host app[1234]: request id=000000 status=200 bytes=1234 path=/api/v1/items\n")
	for off := int64(0); off < size; off += int64(len(block)) {
		switch r := rng.IntN(10); {
		case r < 6:
			for i := 0; i < len(block); i += len(line) {
				copy(block[i:], line)
				if i+40 < len(block) {
					block[i+40] = byte('0' + rng.IntN(10))
				}
			}
		case r < 8:
			for i := range block {
				block[i] = byte(rng.Uint32())
			}
		default:
			clear(block)
		}
		if _, err := w.Write(block); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
