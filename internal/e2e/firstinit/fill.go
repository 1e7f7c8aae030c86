package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
)

// fill makes the first kernel's memory look like a working server's before
// the crash, for the benchmark vmcore: the page cache holds a file read from
// the disk, anonymous memory holds mixed content (text, random bytes,
// zeros), and the rest is left free. The caller keeps the returned memory
// reachable until the crash.
func fill(params map[string]string) ([][]byte, error) {
	f, err := os.Open("/mnt/bench/pagecache.bin")
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(io.Discard, f)
	f.Close()
	if err != nil {
		return nil, err
	}
	var anon [][]byte
	mib, _ := strconv.Atoi(params["ukdump.anon"])
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < mib; i++ {
		chunk := make([]byte, 1<<20)
		fillMixed(rng, chunk)
		anon = append(anon, chunk)
	}
	say("filled: %d MiB in the page cache, %d MiB anonymous", n>>20, mib)
	return anon, nil
}

// fillMixed fills b page by page: 40% text-like, 30% random, 30% zero.
func fillMixed(rng *rand.Rand, b []byte) {
	words := []string{"kernel", "panic", "dump", "memory", "page", "cache", "server", "request", "GET /index.html", "200 OK", "user=", "id=", "\n"}
	for off := 0; off+4096 <= len(b); off += 4096 {
		p := b[off : off+4096]
		switch r := rng.IntN(10); {
		case r < 4:
			pos := 0
			for pos < len(p) {
				w := words[rng.IntN(len(words))] + fmt.Sprint(rng.IntN(1000)) + " "
				pos += copy(p[pos:], w)
			}
		case r < 7:
			for i := 0; i < len(p); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8; j++ {
					p[i+j] = byte(v >> (8 * j))
				}
			}
		default:
			// Go's allocator hands out zeroed memory; touch it so the
			// page exists.
			p[0] = 0
		}
	}
}
