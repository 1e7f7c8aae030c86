// Package crypttab reads and edits /etc/crypttab (crypttab(5)), the table
// of the encrypted volumes that systemd-cryptsetup and Debian's cryptroot
// open at boot, and tells which of those programs this system has.
//
// An edit changes one line's options and nothing else: every other line,
// comments and blank lines included, and every other byte of the edited
// line are kept as they were, so that the diff shows only what ukdump
// changed and a person's layout survives.
package crypttab

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ukdump/ukdump/pkg/config"
)

// DefaultFile is the crypttab of the running system.
const DefaultFile = "/etc/crypttab"

// LinkVolumeKey is the option of systemd-cryptsetup (256 and later, with
// cryptsetup 2.7) that links a LUKS2 volume key into a keyring when it
// opens the volume.
const LinkVolumeKey = "link-volume-key"

// KeyType is the type of key link-volume-key= should leave for transport
// t: a logon key for the kernel transport, which has the kernel copy it
// by name (userspace never reads a logon key back); a user key for the
// initrd transport, whose key bytes the loader must read.
func KeyType(t config.Transport) string {
	if t == config.Kernel {
		return "logon"
	}
	return "user"
}

// LinkVolumeKeyValue is the value of link-volume-key= that leaves the key
// in root's user keyring (@u) as a key of keyType ("logon" or "user")
// named desc.
func LinkVolumeKeyValue(keyType, desc string) string {
	return "@u::%" + keyType + ":" + desc
}

// File is a crypttab, line by line.
type File struct {
	lines []line
}

// line is one line as it was read (or as an edit left it): its text
// without the line end, the line end, and where its fields are.
type line struct {
	text string
	// eol is "\n", or "" for a last line without one.
	eol string
	// fields are the [start, end) byte ranges of the fields of a volume
	// line; nil for comments, blank lines and lines that are not one.
	fields [][2]int
}

// Entry is a volume line.
type Entry struct {
	// Line is the line's index in the file, from 0.
	Line int
	// Name is the mapping's name (/dev/mapper/<name>), Device the
	// encrypted device as written (UUID=…, /dev/…), KeyFile the key file
	// field ("" when absent).
	Name, Device, KeyFile string
	// Options are the comma-separated options as written; nil when the
	// field is absent.
	Options []string
}

// Option returns the value of the option name (name=value, or "" for a
// flag), and whether the line has it.
func (e Entry) Option(name string) (string, bool) {
	for _, o := range e.Options {
		if k, v, _ := strings.Cut(o, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// Parse reads a crypttab. It never fails: a line that is not a volume line
// (a comment, a blank line, or a malformed line that systemd would skip
// too) is kept as text and is no Entry.
func Parse(b []byte) *File {
	f := &File{}
	text := string(b)
	for text != "" {
		l, rest, found := strings.Cut(text, "\n")
		eol := ""
		if found {
			eol = "\n"
		}
		f.lines = append(f.lines, parseLine(l, eol))
		text = rest
	}
	return f
}

// parseLine finds the fields of a volume line: two to four fields
// separated by white space, not starting with #.
func parseLine(text, eol string) line {
	l := line{text: text, eol: eol}
	var fields [][2]int
	start := -1
	for i := 0; i <= len(text); i++ {
		space := i == len(text) || isSpace(text[i])
		switch {
		case space && start >= 0:
			fields = append(fields, [2]int{start, i})
			start = -1
		case !space && start < 0:
			start = i
		}
	}
	if len(fields) >= 2 && len(fields) <= 4 && text[fields[0][0]] != '#' {
		l.fields = fields
	}
	return l
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// Bytes is the file as it is now.
func (f *File) Bytes() []byte {
	var b strings.Builder
	for _, l := range f.lines {
		b.WriteString(l.text)
		b.WriteString(l.eol)
	}
	return []byte(b.String())
}

// Clone returns a copy to edit, f staying as it is.
func (f *File) Clone() *File {
	return &File{lines: append([]line(nil), f.lines...)}
}

// Entries are the volume lines, in file order.
func (f *File) Entries() []Entry {
	var out []Entry
	for i := range f.lines {
		if e, ok := f.entry(i); ok {
			out = append(out, e)
		}
	}
	return out
}

func (f *File) entry(i int) (Entry, bool) {
	l := f.lines[i]
	if l.fields == nil {
		return Entry{}, false
	}
	field := func(n int) string {
		if n >= len(l.fields) {
			return ""
		}
		return l.text[l.fields[n][0]:l.fields[n][1]]
	}
	e := Entry{Line: i, Name: field(0), Device: field(1), KeyFile: field(2)}
	if len(l.fields) == 4 {
		e.Options = strings.Split(field(3), ",")
	}
	return e, true
}

// ErrNotVolume means an edit named a line that is not a volume line.
var ErrNotVolume = errors.New("not a volume line")

// SetOption makes the volume line i carry name=value once: an option of
// that name with another value is replaced (and any further one dropped),
// a missing one is added, after a key file field "none" when the line has
// none. It reports whether the line changed.
func (f *File) SetOption(i int, name, value string) (bool, error) {
	e, ok := f.entry(i)
	if !ok {
		return false, fmt.Errorf("crypttab: line %d: %w", i+1, ErrNotVolume)
	}
	opt := name + "=" + value
	l := f.lines[i]
	fl := l.fields
	// A line's own separator keeps its layout: tabs stay tabs.
	sep := l.text[fl[0][1]:fl[1][0]]
	var text string
	switch len(fl) {
	case 2:
		text = l.text[:fl[1][1]] + sep + "none" + sep + opt + l.text[fl[1][1]:]
	case 3:
		text = l.text[:fl[2][1]] + sep + opt + l.text[fl[2][1]:]
	default:
		opts := setOption(e.Options, name, opt)
		if strings.Join(opts, ",") == strings.Join(e.Options, ",") {
			return false, nil
		}
		text = l.text[:fl[3][0]] + strings.Join(opts, ",") + l.text[fl[3][1]:]
	}
	f.lines[i] = parseLine(text, l.eol)
	return true, nil
}

// RemoveOption drops from the volume line i every option called name
// whose value match accepts; a line left with no options loses its
// options field. It reports whether the line changed.
func (f *File) RemoveOption(i int, name string, match func(value string) bool) (bool, error) {
	e, ok := f.entry(i)
	if !ok {
		return false, fmt.Errorf("crypttab: line %d: %w", i+1, ErrNotVolume)
	}
	l := f.lines[i]
	fl := l.fields
	if len(fl) < 4 {
		return false, nil
	}
	var keep []string
	for _, o := range e.Options {
		if k, v, _ := strings.Cut(o, "="); k == name && match(v) {
			continue
		}
		keep = append(keep, o)
	}
	if len(keep) == len(e.Options) {
		return false, nil
	}
	var text string
	if len(keep) == 0 {
		text = l.text[:fl[2][1]] + l.text[fl[3][1]:]
	} else {
		text = l.text[:fl[3][0]] + strings.Join(keep, ",") + l.text[fl[3][1]:]
	}
	f.lines[i] = parseLine(text, l.eol)
	return true, nil
}

// setOption returns opts with opt (name=…) in the place of the first
// option called name, further ones dropped, or at the end. "-" and "none"
// stand for no options.
func setOption(opts []string, name, opt string) []string {
	if len(opts) == 1 && (opts[0] == "-" || opts[0] == "none") {
		return []string{opt}
	}
	var out []string
	done := false
	for _, o := range opts {
		if k, _, _ := strings.Cut(o, "="); k == name {
			if !done {
				out = append(out, opt)
				done = true
			}
			continue
		}
		out = append(out, o)
	}
	if !done {
		out = append(out, opt)
	}
	return out
}
