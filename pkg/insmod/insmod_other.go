//go:build !linux

package insmod

import (
	"errors"
	"fmt"
)

// File exists on other systems only so that the packages that import it
// compile on developer machines; loading modules is Linux-only.
func File(path, params string) error {
	return fmt.Errorf("insmod: load %s: %w", path, errors.ErrUnsupported)
}

// Image is File for a module image in memory.
func Image(name string, image []byte, params string) error {
	return fmt.Errorf("insmod: load %s: %w", name, errors.ErrUnsupported)
}
