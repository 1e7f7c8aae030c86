package zeropage

import (
	"bytes"
	"testing"
)

// TestIs sets each byte of pages of several lengths (whole 64-byte
// blocks, a tail, shorter than a block) in turn: Is must see every one.
func TestIs(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 200, 4096, 4096 + 7} {
		p := make([]byte, n)
		if !Is(p) {
			t.Fatalf("Is(%d zero bytes) = false", n)
		}
		for i := range p {
			for _, v := range []byte{1, 0x80} {
				p[i] = v
				if Is(p) {
					t.Fatalf("Is(%d bytes with %#x at %d) = true", n, v, i)
				}
				p[i] = 0
			}
		}
	}
}

func FuzzIs(f *testing.F) {
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := Is(p), bytes.Equal(p, make([]byte, len(p))); got != want {
			t.Fatalf("Is(%x) = %v, want %v", p, got, want)
		}
	})
}

// BenchmarkIs compares Is with bytes.Equal against a zero page, on a zero
// page (the whole page is read). Run it under qemu-x86_64 too: that is
// where the two differ.
func BenchmarkIs(b *testing.B) {
	page, zero := make([]byte, 4096), make([]byte, 4096)
	b.Run("loop", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if !Is(page) {
				b.Fatal("not zero")
			}
		}
	})
	b.Run("bytes.Equal", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if !bytes.Equal(page, zero) {
				b.Fatal("not zero")
			}
		}
	})
}
