package e2e

import "testing"

func TestBzImageRelease(t *testing.T) {
	k := testKernel(t)
	rel, err := bzImageRelease(k.Image)
	if err != nil || rel != k.Release {
		t.Errorf("bzImageRelease = %q, %v; want %q", rel, err, k.Release)
	}
}
