package kmod

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Load inserts the module file at path into the running kernel with the
// given parameters (e.g. "foo=1 bar=x"). A module that is already loaded
// is not an error, so init can load a precomputed list without tracking
// what the kernel or an earlier step already brought in.
//
// u-root's pkg/kmodule was considered; it resolves dependencies at run
// time from modules.dep and probes in parallel. Here the order is fixed at
// build time by Resolve, so this tiny sequential loader is all init needs.
//
// Uncompressed files go through finit_module so the kernel can apply
// module signature policy to the file itself. Compressed files are
// decompressed here and passed to init_module, because in-kernel
// decompression (MODULE_INIT_COMPRESSED_FILE) needs Linux 6.4 and a
// matching CONFIG_MODULE_DECOMPRESS.
func Load(path, params string) error {
	var err error
	if strings.HasSuffix(path, ".ko") {
		err = finit(path, params)
	} else {
		var image []byte
		if image, err = Decompress(path); err != nil {
			return err
		}
		err = unix.InitModule(image, params)
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("kmod: load %s: %w", path, err)
	}
	return nil
}

func finit(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), params, 0)
}
