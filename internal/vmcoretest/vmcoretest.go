// Package vmcoretest gives tests the ELF vmcores of real crashes. make test
// names them in environment variables after the QEMU tests have made them;
// a plain go test has none, and the tests that need one are skipped.
//
// It imports no ukdump package, so that pkg/vmcore's own (internal) tests
// can use it without an import cycle.
package vmcoretest

import (
	"io"
	"os"
	"testing"
)

// The environment variables naming the real vmcores.
const (
	Debian61  = "UKDUMP_TEST_VMCORE"     // Debian 12's Linux 6.1
	Debian612 = "UKDUMP_TEST_VMCORE_612" // Debian's Linux 6.12
	Linux73   = "UKDUMP_TEST_VMCORE_73"  // Linux 7.3 (the crashdm test kernel)
	// Linux73ARM64 is the arm64 crashdm kernel's, read on this x86_64
	// host as on any other.
	Linux73ARM64 = "UKDUMP_TEST_VMCORE_73_ARM64"
)

// All returns the variables of all real vmcores, oldest kernel first, the
// arm64 one last.
func All() []string { return []string{Debian61, Debian612, Linux73, Linux73ARM64} }

// Path returns the file named by the environment variable env, or skips
// the test when env is not set. A set variable is trusted: a file that is
// missing then fails the test when it is opened, not skips it.
func Path(t testing.TB, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Skipf("%s not set", env)
	}
	return p
}

// Open opens the vmcore named by env with open (vmcore.Open, os.Open, ...)
// and closes it when the test ends. It skips as Path does and fails the
// test when open fails. It returns the path too, for tests that hand the
// file to other tools.
func Open[C io.Closer](t testing.TB, env string, open func(path string) (C, error)) (C, string) {
	t.Helper()
	path := Path(t, env)
	c, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}
