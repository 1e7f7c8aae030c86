package mkinitrd

import (
	"bytes"
	"testing"
)

// retainingWriter keeps the slices it is given, as a careless writer
// could, so the test can see whether the buffer was wiped after use.
type retainingWriter struct{ got [][]byte }

func (w *retainingWriter) Write(p []byte) (int, error) {
	w.got = append(w.got, p)
	return len(p), nil
}

func TestWriteSecretsWipesItsBuffer(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5}, 64)
	w := &retainingWriter{}
	n, err := writeSecrets(w, 3, []Secret{{Name: SecretsDir + "/v.key", Data: key}}, SecretsDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.got) != 1 || int64(len(w.got[0])) != n {
		t.Fatalf("want one write of %d bytes, got %d writes", n, len(w.got))
	}
	if (3+n)%4 != 0 {
		t.Errorf("archive not padded to a 4-byte boundary: offset 3 + %d", n)
	}
	if bytes.Contains(w.got[0], key[:8]) || !bytes.Equal(w.got[0], make([]byte, n)) {
		t.Error("the secrets buffer still holds data after writeSecrets returned")
	}
}
