package luks

import "fmt"

// Limits on the shape of LUKS2 JSON metadata. cryptsetup allows 32
// keyslots, 32 tokens, 32 segments and 8 digests (LUKS2_*_MAX), and json-c
// nests 32 deep; a checksummed 4 MiB area of tiny objects within none of
// these once took tens of MiB of heap to decode, more than a crash kernel
// has. So the text is measured first, without allocating, and only a
// header of a shape cryptsetup itself could have is decoded.
const (
	maxSectionEntries = 32 // keyslots, tokens, segments, digests
	maxKeptElements   = 64 // any other object or array that is decoded
	maxJSONDepth      = 32
)

// checkShape scans JSON text (already known to start with '{') and refuses
// too many entries in a top-level section, too many elements in a
// container that is decoded, or nesting too deep. Token contents are never
// decoded (see skipped), so only their depth is bounded. It does not
// validate the syntax: json.Unmarshal does that next.
func checkShape(text []byte) error {
	type frame struct {
		name     string // the top-level key this container is the value of
		n        int    // elements so far
		limit    int    // 0: unbounded
		isObject bool
		wantKey  bool // in an object, the next string is a key
	}
	var stack []frame
	var key []byte // last key read in the top-level object
	inString, escaped := false, false
	strStart := 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
				if len(stack) == 1 && stack[0].isObject && stack[0].wantKey {
					key = text[strStart:i]
				}
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r', ':':
			if c == ':' && len(stack) > 0 {
				stack[len(stack)-1].wantKey = false
			}
			continue
		case ',':
			if len(stack) > 0 {
				f := &stack[len(stack)-1]
				f.wantKey = f.isObject
				f.n++
				if f.limit > 0 && f.n > f.limit {
					return shapeError(f.name, f.limit)
				}
			}
			continue
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		// The start of a value (or of a key): the first one counts as an
		// element of its container.
		if len(stack) > 0 {
			if f := &stack[len(stack)-1]; f.n == 0 {
				f.n = 1
			}
		}
		switch c {
		case '"':
			inString, strStart = true, i+1
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("nested deeper than %d", maxJSONDepth)
			}
			f := frame{isObject: c == '{', wantKey: c == '{', limit: maxKeptElements}
			switch {
			case len(stack) == 0:
				f.name = "top-level object"
			case len(stack) == 1:
				f.name = string(key)
				switch f.name {
				case "keyslots", "tokens", "segments", "digests":
					f.limit = maxSectionEntries
				}
			default:
				f.name = stack[len(stack)-1].name
				if f.name == "tokens" {
					f.limit = 0 // skipped, never decoded
				}
			}
			stack = append(stack, f)
		}
	}
	return nil
}

func shapeError(name string, limit int) error {
	if limit == maxSectionEntries {
		return fmt.Errorf("more than %d %s", limit, name)
	}
	return fmt.Errorf("an object or array in %s has more than %d elements", name, limit)
}

// skipped decodes a JSON value without keeping anything of it: ukdump never
// uses tokens, and keeping them is what made hostile headers expensive.
type skipped struct{}

// UnmarshalJSON accepts any value; encoding/json has checked its syntax.
func (*skipped) UnmarshalJSON([]byte) error { return nil }
