package loader

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/ukdump/ukdump/mkinitrd"
	"github.com/ukdump/ukdump/pkg/estimate"
	"github.com/ukdump/ukdump/pkg/kexec"
)

// Estimate says how much memory the crash kernel of p needs, with
// reserved as the current reservation. It builds the initramfs in memory
// exactly as Load does (without keys, whose few bytes do not count) and
// only counts its bytes.
func (p *Plan) Estimate(reserved uint64) (estimate.Estimate, error) {
	rep, err := mkinitrd.Build(io.Discard, p.Build)
	if err != nil {
		return estimate.Estimate{}, fmt.Errorf("loader: estimate: %w", err)
	}
	return p.estimate(rep, reserved)
}

func (p *Plan) estimate(rep *mkinitrd.Report, reserved uint64) (estimate.Estimate, error) {
	img, err := readKernel(p.Options.Kernel)
	if err != nil {
		return estimate.Estimate{}, fmt.Errorf("loader: estimate: %w", err)
	}
	return estimate.Compute(estimate.Inputs{
		Kernel:      p.Options.Kernel,
		InitSize:    img.LoadSize,
		SizeTerm:    img.SizeTerm,
		Initramfs:   uint64(rep.Size),
		Unpacked:    uint64(rep.Uncompressed),
		Compression: string(rep.Compression),
		Reserved:    reserved,
		CPUs:        p.File.CrashCPUs,
	}), nil
}

// checkReservation fails early, before any key is touched, when the kernel
// cannot take a crash kernel: no kexec support, or no crashkernel=
// reservation, in which case it says what to add.
func checkReservation(p *Plan) (kexec.Status, error) {
	ks, err := kexec.ReadStatus(p.Options.Sys.SysDir)
	switch {
	case err != nil:
		return ks, fmt.Errorf("loader: %w", err)
	case !ks.Supported:
		return ks, errors.New("loader: " + kexec.Unsupported)
	case ks.Reserved > 0:
		return ks, nil
	}
	figure := "<size>"
	if e, err := p.Estimate(0); err == nil {
		figure = strings.TrimPrefix(e.Cmdline(), "crashkernel=")
	}
	return ks, fmt.Errorf("loader: no memory reserved for a crash kernel (crashkernel= is missing from the kernel command line): "+
		"add crashkernel=%s (\"ukdump estimate\" shows how it is reckoned) to the kernel command line, "+
		"e.g. to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, and reboot", figure)
}

// kernelRelease is the release of the kernel image: from its version
// string, else from a file name such as vmlinuz-6.1.0-57-cloud-amd64.
func kernelRelease(image string) string {
	if img, err := readKernel(image); err == nil && img.Release != "" {
		return img.Release
	}
	if _, rel, ok := strings.Cut(filepath.Base(image), "-"); ok {
		return rel
	}
	return ""
}
