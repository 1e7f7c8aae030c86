package crypttab

import (
	"fmt"
	"strings"
)

// Context is how many unchanged lines Diff shows around a change.
const Context = 2

// Diff is the change from old to new as a unified diff of name: only the
// changed lines, with Context lines around them. Edits change lines and
// never add or remove any, so the two files have the same lines, one for
// one; a pair that does not is shown as one hunk of all lines. The diff
// is empty when nothing changed.
func Diff(name string, old, new *File) string {
	a, b := texts(old), texts(new)
	if len(a) != len(b) {
		return hunkDiff(name, a, b, []int{0}, []int{max(len(a), len(b))})
	}
	var starts, ends []int
	for i := range a {
		if a[i] == b[i] {
			continue
		}
		lo, hi := max(0, i-Context), min(len(a), i+1+Context)
		if n := len(ends); n > 0 && lo <= ends[n-1] {
			ends[n-1] = hi
			continue
		}
		starts, ends = append(starts, lo), append(ends, hi)
	}
	if len(starts) == 0 {
		return ""
	}
	return hunkDiff(name, a, b, starts, ends)
}

func texts(f *File) []string {
	out := make([]string, len(f.lines))
	for i, l := range f.lines {
		out[i] = l.text
	}
	return out
}

// hunkDiff writes the hunks [starts[i], ends[i]) of a against b; lines
// past the end of one side are absent from it.
func hunkDiff(name string, a, b []string, starts, ends []int) string {
	var w strings.Builder
	fmt.Fprintf(&w, "--- %s\n+++ %s (new)\n", name, name)
	for h := range starts {
		lo, hi := starts[h], ends[h]
		na, nb := min(hi, len(a))-lo, min(hi, len(b))-lo
		fmt.Fprintf(&w, "@@ -%s +%s @@\n", hunkRange(lo, na), hunkRange(lo, nb))
		for i := lo; i < hi; {
			if i < len(a) && i < len(b) && a[i] == b[i] {
				fmt.Fprintf(&w, " %s\n", a[i])
				i++
				continue
			}
			// A run of changed lines: the old ones, then the new ones.
			j := i
			for j < hi && (j >= len(a) || j >= len(b) || a[j] != b[j]) {
				j++
			}
			for k := i; k < j && k < len(a); k++ {
				fmt.Fprintf(&w, "-%s\n", a[k])
			}
			for k := i; k < j && k < len(b); k++ {
				fmt.Fprintf(&w, "+%s\n", b[k])
			}
			i = j
		}
	}
	return w.String()
}

// hunkRange is a hunk's "start,count" (from 1), as diff -u writes it:
// an empty range starts at the line before it.
func hunkRange(lo, n int) string {
	if n <= 0 {
		return fmt.Sprintf("%d,0", lo)
	}
	return fmt.Sprintf("%d,%d", lo+1, n)
}
