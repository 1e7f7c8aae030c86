// Package insmod inserts kernel modules into the running kernel. It is the
// crash kernel's half of module handling: the generator (pkg/kmod) resolves
// the closure and decompresses every module at build time, so the crash
// kernel only ever sees plain .ko files in a fixed order and links no
// decompressor.
//
// u-root's pkg/kmodule was considered; it resolves dependencies at run time
// from modules.dep and probes in parallel. Here the order is fixed at build
// time, so a tiny sequential loader is all init needs.
package insmod

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// File inserts the uncompressed module file at path with the given
// parameters (e.g. "foo=1 bar=x"). A module that is already loaded is not
// an error, so init can load a precomputed list without tracking what the
// kernel or an earlier step already brought in. It goes through
// finit_module so the kernel can apply its signature policy to the file.
func File(path, params string) error {
	if !strings.HasSuffix(path, ".ko") {
		return fmt.Errorf("insmod: %s: not an uncompressed .ko file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("insmod: %w", err)
	}
	defer f.Close()
	return check(path, unix.FinitModule(int(f.Fd()), params, 0))
}

// Image inserts a module from its ELF image in memory (a module that was
// decompressed by the caller); name is only for messages.
func Image(name string, image []byte, params string) error {
	return check(name, unix.InitModule(image, params))
}

func check(name string, err error) error {
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("insmod: load %s: %w", name, err)
	}
	return nil
}
