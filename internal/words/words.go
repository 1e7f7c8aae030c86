// Package words turns lists of names into English, so that an error, a
// flag's help and a directive's doc made from one list say the same thing.
package words

import (
	"fmt"
	"strings"
)

// Or joins names, printed as fmt.Sprint prints them, as "a, b or c": "a"
// for one name, "" for none.
func Or[T any](names []T) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = fmt.Sprint(n)
	}
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
