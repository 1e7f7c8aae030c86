package crypttab

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics and gives back its input byte for byte;
// an edit changes only the line it names, leaves the option readable, and
// a second edit with the same value changes nothing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{debian, "", "a b", "a\tb\tc\td\n", "a b c d e\n", "#\n", "a b none -\r\n", "x y z link-volume-key=q,,\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := Parse(in)
		if !bytes.Equal(p.Bytes(), in) {
			t.Fatalf("Parse(%q).Bytes() = %q", in, p.Bytes())
		}
		for _, e := range p.Entries() {
			q := p.Clone()
			changed, err := q.SetOption(e.Line, LinkVolumeKey, "@u::%user:kdump-cryptsetup:vk-x")
			if err != nil {
				t.Fatalf("SetOption on entry %+v: %v", e, err)
			}
			r := Parse(q.Bytes())
			if len(r.lines) != len(p.lines) {
				t.Fatalf("an edit changed the number of lines: %q to %q", in, q.Bytes())
			}
			for i := range p.lines {
				if i != e.Line && r.lines[i].text != p.lines[i].text {
					t.Fatalf("an edit of line %d changed line %d: %q to %q", e.Line, i, p.lines[i].text, r.lines[i].text)
				}
			}
			ne, ok := r.entry(e.Line)
			if !ok || ne.Name != e.Name || ne.Device != e.Device {
				t.Fatalf("edited line %q is no longer the volume %q", r.lines[e.Line].text, e.Name)
			}
			if v, ok := ne.Option(LinkVolumeKey); !ok || v != "@u::%user:kdump-cryptsetup:vk-x" {
				t.Fatalf("edited line %q: option = %q, %v", r.lines[e.Line].text, v, ok)
			}
			if again, _ := r.SetOption(e.Line, LinkVolumeKey, "@u::%user:kdump-cryptsetup:vk-x"); again {
				t.Fatalf("a second edit changed %q again", r.lines[e.Line].text)
			}
			if d := Diff("f", p, q); changed != (d != "") || changed && !strings.Contains(d, "\n+") {
				t.Fatalf("changed %v, diff %q", changed, d)
			}
		}
	})
}
