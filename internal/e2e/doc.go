// Package e2e holds the end-to-end tests: real kernels in QEMU, a real
// kexec_file_load, a real crash, and dumps checked by tools we did not write.
// The package itself has no code; see the _test files and firstinit.
package e2e
