package keys

import (
	"strings"
	"testing"
)

func TestReadSecret(t *testing.T) {
	b, err := ReadSecret(strings.NewReader("abc"), 3)
	if err != nil || string(b) != "abc" || cap(b) != 3 {
		t.Fatalf("ReadSecret = %q (cap %d), %v", b, cap(b), err)
	}
	if _, err := ReadSecret(strings.NewReader("abcd"), 3); err == nil {
		t.Fatal("over-long secret accepted")
	}
}
