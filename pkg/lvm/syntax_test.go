package lvm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// dump writes a parsed tree back in one canonical line, for comparing.
func dump(nodes []*node) string {
	var parts []string
	for _, n := range nodes {
		if n.section {
			parts = append(parts, fmt.Sprintf("%s{%s}", n.key, dump(n.children)))
		} else {
			parts = append(parts, n.key+"="+dumpValue(n.value))
		}
	}
	return strings.Join(parts, " ")
}

func dumpValue(v value) string {
	switch v.kind {
	case kindInt:
		return fmt.Sprint(v.num)
	case kindFloat:
		return "f" + v.str
	case kindArray:
		var items []string
		for _, i := range v.items {
			items = append(items, dumpValue(i))
		}
		return "[" + strings.Join(items, ",") + "]"
	}
	return fmt.Sprintf("%q", v.str)
}

func TestParseText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a = 1", "a=1"},
		{"a=1 b=-2 c=+3 d=0755 e=1.5 f=.5", "a=1 b=-2 c=3 d=493 e=f1.5 f=f.5"},
		{"# comment\na = \"x # not a comment\" # comment\n", `a="x # not a comment"`},
		{`a = "q\"uote\\back\slash"`, `a="q\"uote\\back\\slash"`},
		{"a = 'raw \\\" x'", `a="raw \\\" x"`},
		{"a = [\"x\", 1, \"y\"]\nb = []\nc = [1,]", `a=["x",1,"y"] b=[] c=[1]`},
		{"s { t { u = bare } v = 2 }", `s{t{u="bare"} v=2}`},
		{"a = [bare, words]", `a=["bare","words"]`},
		{"\"quoted name\" = 1 my-vg { } 0abc = 2", `quoted name=1 my-vg{} 0abc=2`},
		{"a = 1\x00garbage {", "a=1"},
		{"a = \"multi\nline\"", `a="multi\nline"`},
	} {
		nodes, err := parseText([]byte(tc.in))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := dump(nodes); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseTextErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a", `line 1: expected { or = after "a", found the end of the text`},
		{"a {", `section "a" (line 1) is not closed`},
		{"a = ", "expected a value, found the end"},
		{"a = \"open", "string not closed"},
		{"a = 'open", "string not closed"},
		{"a = [1, [2]]", "expected a value"},
		{"a = 99999999999999999999", "is not a 64-bit integer"},
		{"a = 0x10", "expected { or = after \"x10\""},
		{"= 1", "expected a name"},
		{"}", "expected a name"},
		{"a = [1 2", "expected a value, found the end"},
		{"\n\na = {", "line 3: expected a value"},
		{strings.Repeat("a {", maxDepth+1), "nested deeper than 16"},
		{strings.Repeat("a = 1\n", maxNodes+1), "more than 131072 entries"},
		{"a = [" + strings.Repeat("1,", maxNodes+1) + "]", "more than 131072 entries"},
	} {
		_, err := parseText([]byte(tc.in))
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: %v, want %q", tc.in, err, tc.want)
		}
	}
}
