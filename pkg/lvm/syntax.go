package lvm

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The metadata text is in lvm2's configuration syntax (libdm-config.c):
//
//	section { key = value  key = [v, v, ...]  sub { ... } }
//
// with "#" comments, strings in double quotes (\" and \\ escaped) or single
// quotes (raw), integers, floats, and bare words after "=". This file turns
// it into a tree of nodes; vg.go gives the tree its meaning.

// Bounds of what the parser takes. lvm2-written metadata nests five deep
// and has tens of nodes per LV; anything far beyond is not metadata.
const (
	maxDepth = 16
	maxNodes = 1 << 17
)

// node is a section (children) or an assignment (value).
type node struct {
	key      string
	line     int
	section  bool
	children []*node
	value    value
}

// valueKind tells what a value holds.
type valueKind int

const (
	kindString valueKind = iota
	kindInt
	kindFloat
	kindArray
)

type value struct {
	kind  valueKind
	str   string // kindString, and kindFloat's text
	num   int64
	items []value // kindArray: scalars only
}

// token kinds
type tokenKind int

const (
	tokEOF tokenKind = iota
	tokSectionBegin
	tokSectionEnd
	tokArrayBegin
	tokArrayEnd
	tokComma
	tokEq
	tokString // quoted, already unescaped
	tokInt
	tokFloat
	tokWord // identifier, or bare string where a value goes
)

type token struct {
	kind tokenKind
	text string
	line int
}

type parser struct {
	src   []byte
	pos   int
	line  int
	tok   token
	nodes int
}

// parseText parses metadata text into the children of an unnamed root.
func parseText(src []byte) ([]*node, error) {
	p := &parser{src: src, line: 1}
	if err := p.next(false); err != nil {
		return nil, err
	}
	var top []*node
	for p.tok.kind != tokEOF {
		n, err := p.item(1)
		if err != nil {
			return nil, err
		}
		top = append(top, n)
	}
	return top, nil
}

func (p *parser) errorf(format string, args ...any) error {
	return formatErr("metadata text", "line %d: %s", p.tok.line, fmt.Sprintf(format, args...))
}

// item parses "key { ... }" or "key = value".
func (p *parser) item(depth int) (*node, error) {
	if depth > maxDepth {
		return nil, p.errorf("sections nested deeper than %d", maxDepth)
	}
	if p.nodes++; p.nodes > maxNodes {
		return nil, p.errorf("more than %d entries", maxNodes)
	}
	if p.tok.kind != tokWord && p.tok.kind != tokString || p.tok.text == "" {
		return nil, p.errorf("expected a name, found %s", p.tok.describe())
	}
	n := &node{key: p.tok.text, line: p.tok.line}
	// After a name comes "{" or "=": a value cannot follow yet.
	if err := p.next(false); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tokSectionBegin:
		n.section = true
		if err := p.next(false); err != nil {
			return nil, err
		}
		for p.tok.kind != tokSectionEnd {
			if p.tok.kind == tokEOF {
				return nil, p.errorf("section %q (line %d) is not closed", n.key, n.line)
			}
			c, err := p.item(depth + 1)
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, c)
		}
		return n, p.next(false)
	case tokEq:
		if err := p.next(true); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		n.value = v
		return n, nil
	}
	return nil, p.errorf("expected { or = after %q, found %s", n.key, p.tok.describe())
}

// value parses a scalar or an array of scalars, and the token after it.
func (p *parser) value() (value, error) {
	if p.tok.kind != tokArrayBegin {
		v, err := p.scalar()
		if err != nil {
			return value{}, err
		}
		return v, p.next(false)
	}
	arr := value{kind: kindArray}
	if err := p.next(true); err != nil {
		return value{}, err
	}
	for p.tok.kind != tokArrayEnd {
		if p.nodes++; p.nodes > maxNodes {
			return value{}, p.errorf("more than %d entries", maxNodes)
		}
		v, err := p.scalar()
		if err != nil {
			return value{}, err
		}
		arr.items = append(arr.items, v)
		if err := p.next(false); err != nil {
			return value{}, err
		}
		if p.tok.kind == tokComma {
			if err := p.next(true); err != nil {
				return value{}, err
			}
		}
	}
	return arr, p.next(false)
}

func (p *parser) scalar() (value, error) {
	t := p.tok
	switch t.kind {
	case tokString, tokWord:
		return value{kind: kindString, str: t.text}, nil
	case tokFloat:
		return value{kind: kindFloat, str: t.text}, nil
	case tokInt:
		// strtoll with base 0 in lvm2: 0x and leading-0 octal too.
		n, err := strconv.ParseInt(t.text, 0, 64)
		if err != nil {
			return value{}, p.errorf("%q is not a 64-bit integer", t.text)
		}
		return value{kind: kindInt, num: n}, nil
	}
	return value{}, p.errorf("expected a value, found %s", t.describe())
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end of the text"
	case tokString:
		return "string " + strconv.Quote(t.text)
	}
	return strconv.Quote(t.text)
}

// punctuation is the token of a one-character token, or tokEOF.
func punctuation(c byte) tokenKind {
	switch c {
	case '{':
		return tokSectionBegin
	case '}':
		return tokSectionEnd
	case '[':
		return tokArrayBegin
	case ']':
		return tokArrayEnd
	case ',':
		return tokComma
	case '=':
		return tokEq
	}
	return tokEOF
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// next reads the next token. valueAllowed says whether a number or a bare
// word may start here (after "=", "[" or ","), as in lvm2's tokenizer:
// elsewhere "-x" or "1a" are names.
func (p *parser) next(valueAllowed bool) error {
	s := p.src
	for p.pos < len(s) {
		if c := s[p.pos]; c == '#' {
			for p.pos < len(s) && s[p.pos] != '\n' {
				p.pos++
			}
		} else if isSpace(c) {
			if c == '\n' {
				p.line++
			}
			p.pos++
		} else {
			break
		}
	}
	p.tok = token{line: p.line}
	if p.pos >= len(s) || s[p.pos] == 0 {
		p.tok.kind = tokEOF
		return nil
	}
	start := p.pos
	c := s[p.pos]
	p.pos++
	if k := punctuation(c); k != tokEOF {
		p.tok.kind, p.tok.text = k, string(c)
		return nil
	}
	switch {
	case c == '"':
		return p.quoted(start)
	case c == '\'':
		end := bytes.IndexByte(s[p.pos:], '\'')
		if end < 0 {
			return p.errorf("string not closed")
		}
		p.tok.kind, p.tok.text = tokString, string(s[p.pos:p.pos+end])
		p.pos += end + 1
		return nil
	case valueAllowed && (isDigit(c) || c == '+' || c == '-' || c == '.'):
		p.tok.kind = tokInt
		if c == '.' {
			p.tok.kind = tokFloat
		}
		for ; p.pos < len(s); p.pos++ {
			if s[p.pos] == '.' && p.tok.kind == tokInt {
				p.tok.kind = tokFloat
			} else if !isDigit(s[p.pos]) {
				break
			}
		}
		// "0x10" stops at x like lvm2's scanner, and strtoll then fails:
		// lvm2 never writes hex.
		p.tok.text = string(s[start:p.pos])
		return nil
	}
	for p.pos < len(s) {
		c := s[p.pos]
		if c == 0 || isSpace(c) || c == '#' || c == '=' || c == '{' || c == '}' {
			break
		}
		// A bare word as a value ends at "," and "]" too, or an array
		// of bare words could not be read; lvm2 writes none.
		if valueAllowed && (c == ',' || c == ']') {
			break
		}
		p.pos++
	}
	p.tok.kind, p.tok.text = tokWord, string(s[start:p.pos])
	return nil
}

// quoted reads a double-quoted string; a backslash escapes '"' and '\\'
// (dm_unescape_double_quotes) and is kept before any other character.
func (p *parser) quoted(start int) error {
	s := p.src
	var b strings.Builder
	for p.pos < len(s) && s[p.pos] != 0 {
		c := s[p.pos]
		switch {
		case c == '"':
			p.pos++
			p.tok.kind, p.tok.text = tokString, b.String()
			return nil
		case c == '\\' && p.pos+1 < len(s) && (s[p.pos+1] == '"' || s[p.pos+1] == '\\'):
			b.WriteByte(s[p.pos+1])
			p.pos += 2
			continue
		case c == '\n':
			p.line++
		}
		b.WriteByte(c)
		p.pos++
	}
	p.pos = start
	return p.errorf("string not closed")
}
