package keys

import (
	"errors"
	"fmt"
	"io"
)

// ReadSecret reads r to its end into a single buffer of max+1 bytes, so no
// copy of the secret is left behind by a growing buffer; more than max
// bytes is an error (and the buffer is wiped).
func ReadSecret(r io.Reader, max int) ([]byte, error) {
	buf := make([]byte, max+1)
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			Wipe(buf)
			return nil, err
		}
	}
	if n > max {
		Wipe(buf)
		return nil, fmt.Errorf("longer than %d bytes", max)
	}
	return buf[:n:n], nil
}
