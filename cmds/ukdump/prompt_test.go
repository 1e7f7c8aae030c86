package main

import (
	"os"
	"testing"
)

// TestReadLine: the prompt reads up to the newline, no further, from the
// descriptor itself (no reader buffer keeps a copy).
func TestReadLine(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString("first pass\nsecond\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	a, err := readLine(int(r.Fd()), 64)
	if err != nil || string(a) != "first pass" {
		t.Fatalf("readLine = %q, %v", a, err)
	}
	b, err := readLine(int(r.Fd()), 64)
	if err != nil || string(b) != "second" {
		t.Fatalf("second readLine = %q, %v (the first read past its newline?)", b, err)
	}
	if _, err := readLine(int(r.Fd()), 64); err == nil {
		t.Fatal("readLine at end of input succeeded")
	}
	r2, w2, _ := os.Pipe()
	defer r2.Close()
	w2.WriteString("0123456789")
	w2.Close()
	if _, err := readLine(int(r2.Fd()), 4); err == nil {
		t.Fatal("over-long passphrase accepted")
	}
}
