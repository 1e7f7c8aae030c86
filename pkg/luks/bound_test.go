package luks_test

import (
	"bytes"
	"runtime/metrics"
	"time"

	"encoding/json"
	"fmt"
	"github.com/ukdump/ukdump/pkg/luks"
	"runtime"
	"strings"
	"testing"
)

// hugeTokens returns a valid 4 MiB LUKS2 image whose tokens object is n
// tiny tokens: a valid checksum, so only the JSON rules can stop it.
func hugeTokens(t testing.TB, n int) []byte {
	t.Helper()
	m := synthJSON()
	base, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var tok strings.Builder
	tok.WriteString(`"tokens":{`)
	for i := range n {
		if i > 0 {
			tok.WriteByte(',')
		}
		fmt.Fprintf(&tok, `"%d":{}`, i)
	}
	tok.WriteString("}")
	text := bytes.Replace(base, []byte(`"tokens":{}`), []byte(tok.String()), 1)
	text = bytes.Replace(text, []byte(`"json_size":"12288"`), []byte(`"json_size":"4190208"`), 1)
	const hdr = 0x400000
	if len(text) >= hdr-4096 {
		t.Fatalf("JSON text %d bytes does not fit", len(text))
	}
	p := synthCopy(text, copyParams{seqid: 1, hdrSize: hdr})
	s := synthCopy(text, copyParams{seqid: 1, hdrSize: hdr, secondary: true})
	return append(p, s...)
}

// TestTokenFlood: a checksummed 4 MiB JSON area of tiny tokens once took
// ~38 MiB of live heap to parse, more than a crash kernel has. It must be
// refused for its token count, and parsing must not hold much memory.
func TestTokenFlood(t *testing.T) {
	img := hugeTokens(t, 350000)
	var h *luks.Header
	var err error
	peak := peakHeap(func() { h, err = parseBytes(img) })
	t.Logf("Parse: %v; peak live heap %.1f MiB (the image itself: %.1f MiB)", err, float64(peak)/(1<<20), float64(len(img))/(1<<20))
	if err == nil || !strings.Contains(err.Error(), "tokens") {
		t.Fatalf("Parse = %+v, %v; want an error about the token count", h, err)
	}
	// Two 4 MiB JSON areas are read; beyond that, little may be kept.
	if peak > 24<<20 {
		t.Errorf("peak live heap %d MiB while parsing, want under 24", peak>>20)
	}
}

// peakHeap runs f and samples the live heap (objects, not yet collected
// garbage included) every millisecond, returning the highest reading above
// the level before f.
func peakHeap(f func()) uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var max uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if v := read(); v > max {
				max = v
			}
			select {
			case <-done:
				peak <- max
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	max := <-peak
	if max < base {
		return 0
	}
	return max - base
}

// TestJSONShape: headers of a shape cryptsetup could write parse, token
// contents of any size included (they are skipped); more entries than
// cryptsetup allows, or absurd nesting, are refused.
func TestJSONShape(t *testing.T) {
	big := make([]any, 2000)
	for i := range big {
		big[i] = "x\"\\,{["
	}
	deep := any("leaf")
	for range 40 {
		deep = []any{deep}
	}
	many := func(n int, v any) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[fmt.Sprint(i)] = v
		}
		return m
	}
	for _, c := range []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"32 tokens with large contents", func(m map[string]any) {
			m["tokens"] = many(32, map[string]any{"type": "systemd-tpm2", "keyslots": []any{"0"}, "blob": big})
		}, ""},
		{"33 tokens", func(m map[string]any) { m["tokens"] = many(33, map[string]any{}) }, "more than 32 tokens"},
		{"33 keyslots", func(m map[string]any) {
			m["keyslots"] = many(33, map[string]any{"type": "luks2", "key_size": 64})
		}, "more than 32 keyslots"},
		{"65 config flags", func(m map[string]any) {
			cfg := m["config"].(map[string]any)
			cfg["flags"] = big[:65]
		}, "more than 64 elements"},
		{"deep token", func(m map[string]any) {
			m["tokens"] = map[string]any{"0": map[string]any{"type": "x", "keyslots": []any{}, "d": deep}}
		}, "nested deeper"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := synthJSON()
			c.edit(m)
			const hdr = 0x400000
			m["config"].(map[string]any)["json_size"] = fmt.Sprint(hdr - 4096)
			text, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			img := append(synthCopy(text, copyParams{seqid: 1, hdrSize: hdr}),
				synthCopy(text, copyParams{seqid: 1, hdrSize: hdr, secondary: true})...)
			_, err = parseBytes(img)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Parse = %v, want error with %q", err, c.want)
			}
		})
	}
}
