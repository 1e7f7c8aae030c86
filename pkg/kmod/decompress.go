package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// maxModuleSize bounds decompressed output. The largest in-tree modules
// are a few tens of MiB even with debug info; the bound only exists so a
// corrupt or hostile file cannot exhaust memory on the build host.
const maxModuleSize = 1 << 30

// Decompress returns the ELF image of the module file at path, chosen by
// extension: .ko is read as is, .ko.xz, .ko.zst and .ko.gz are
// decompressed. Any other name is an error rather than a guess, because a
// wrong guess would only fail later, inside the crash kernel.
func Decompress(path string) ([]byte, error) {
	data, err := decompress(path)
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", path, err)
	}
	return data, nil
}

func decompress(path string) ([]byte, error) {
	kind := moduleSuffix(path)
	if kind == "" {
		return nil, errors.New("not a .ko, .ko.xz, .ko.zst or .ko.gz file")
	}
	if kind == ".ko" {
		return os.ReadFile(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader
	var format string
	switch kind {
	case ".ko.xz":
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		r, format = xr, "xz"
	case ".ko.zst":
		// One goroutine is enough for files this small and keeps the
		// decoder from holding per-CPU buffers.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r, format = zr, "zstd"
	case ".ko.gz":
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer gr.Close()
		r, format = gr, "gzip"
	}
	// Reading to EOF (rather than stopping once enough bytes arrived) is
	// what makes the decoders verify their trailing checksums.
	data, err := io.ReadAll(io.LimitReader(r, maxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", format, err)
	}
	if len(data) > maxModuleSize {
		return nil, fmt.Errorf("decompressed size exceeds %d bytes", maxModuleSize)
	}
	return data, nil
}

// readDepends returns the depends= list from the .modinfo section of the
// module file at path. That section is what depmod itself reads to build
// modules.dep, so this reproduces depmod's view of hard dependencies.
func readDepends(path string) ([]string, error) {
	data, err := decompress(path)
	if err != nil {
		return nil, err
	}
	info, err := modinfo(data)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, kv := range info {
		v, ok := strings.CutPrefix(kv, "depends=")
		if !ok {
			continue
		}
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, Normalize(d))
			}
		}
	}
	return deps, nil
}

// modinfo returns the key=value strings of an ELF module image's .modinfo
// section. A file without that section is rejected: every real module has
// one (at least vermagic=), so its absence means this is not a module.
func modinfo(image []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("elf: %w", err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("elf: no .modinfo section")
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("elf: .modinfo: %w", err)
	}
	var out []string
	// Entries are NUL-terminated and the compiler may pad between them
	// with extra NULs, so empty fields are skipped.
	for _, kv := range strings.Split(string(data), "\x00") {
		if kv != "" {
			out = append(out, kv)
		}
	}
	return out, nil
}
