//go:build !linux

package kmod

import (
	"errors"
	"fmt"
)

// Load exists on other systems only so that the build-time parts of this
// package (Open, Resolve, Decompress) compile on developer machines;
// loading modules is inherently Linux-only.
func Load(path, params string) error {
	return fmt.Errorf("kmod: load %s: %w", path, errors.ErrUnsupported)
}
