// Package kmod resolves kernel module closures at initramfs build time.
//
// The crash kernel's init has no modprobe and no shell, so everything it
// needs to know (which files to load, in which order) is decided here, on
// the build host, from a module tree such as /lib/modules/<kver> or an
// extracted kernel package.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// ErrNotFound is wrapped by errors for names that are neither a module file
// nor built into the kernel, so callers can tell a bad request from an I/O
// failure.
var ErrNotFound = errors.New("module not found")

// ErrCycle is wrapped by Resolve errors for circular dependencies; a kernel
// could never load such a set, so it is reported instead of looping.
var ErrCycle = errors.New("dependency cycle")

// Tree is an indexed kernel module directory.
//
// A Tree is safe for concurrent use: metadata that is read lazily is
// guarded by an internal lock.
type Tree struct {
	// Dir is the absolute path of the module directory that was opened.
	Dir string

	builtin map[string]bool

	mu   sync.Mutex
	mods map[string]*entry
}

// Module is one loadable module file.
type Module struct {
	// Name is the normalized module name ('-' replaced by '_'), the form
	// the kernel itself uses, so names from any source compare equal.
	Name string
	// Path is the absolute path of the .ko, .ko.xz, .ko.zst or .ko.gz file.
	Path string
	// Deps are the normalized names of modules that must be loaded first.
	Deps []string
}

// entry is the index record of one module. Without modules.dep the
// dependencies are only known after decompressing the module, which is
// slow for xz, so that is postponed until the module is actually needed.
type entry struct {
	path   string
	deps   []string
	loaded bool
	err    error
}

// Normalize returns the canonical spelling of a module name. The kernel
// treats '-' and '_' as equivalent in module names, and file names use
// both, so every lookup goes through this.
func Normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// moduleSuffix returns the module file ending of name (".ko", ".ko.xz",
// ".ko.zst" or ".ko.gz"), or "" if it has none. Both indexing and
// Decompress use it so they agree on what counts as a module file.
func moduleSuffix(name string) string {
	for _, s := range [...]string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(name, s) {
			return s
		}
	}
	return ""
}

// trimSuffix returns the module name for a module file name and whether
// the name has a module suffix at all.
func trimSuffix(base string) (string, bool) {
	s := moduleSuffix(base)
	if s == "" || len(base) == len(s) {
		return "", false
	}
	return Normalize(strings.TrimSuffix(base, s)), true
}

// Open indexes the module directory dir.
//
// modules.dep, when present and non-empty, is authoritative, even where it
// disagrees with the files on disk: it is what modprobe would use on the
// installed system. Without it (an extracted .deb ships none) the tree is
// walked for module files and their dependencies are read from each
// module's .modinfo section on first use.
func Open(dir string) (*Tree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("kmod: %s: not a directory", abs)
	}
	t := &Tree{Dir: abs, mods: map[string]*entry{}}
	if t.builtin, err = readBuiltin(abs); err != nil {
		return nil, err
	}
	ok, err := t.readModulesDep()
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := t.walk(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// readBuiltin reads modules.builtin. A missing file is not an error:
// extracted packages may lack it, and then nothing is treated as builtin.
func readBuiltin(dir string) (map[string]bool, error) {
	builtin := map[string]bool{}
	p := filepath.Join(dir, "modules.builtin")
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return builtin, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if name, ok := trimSuffix(filepath.Base(line)); ok {
			builtin[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", p, err)
	}
	return builtin, nil
}

// readModulesDep loads modules.dep into t and reports whether it did. An
// empty file is treated as absent because it means depmod never ran, and
// the files themselves are then the better source.
func (t *Tree) readModulesDep() (bool, error) {
	p := filepath.Join(t.Dir, "modules.dep")
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	// Lines for modules with many dependencies can exceed the default
	// 64 KiB token size.
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		modPath, depList, found := strings.Cut(line, ":")
		if !found {
			return false, fmt.Errorf("kmod: %s:%d: missing ':'", p, lineNo)
		}
		name, ok := trimSuffix(filepath.Base(modPath))
		if !ok {
			return false, fmt.Errorf("kmod: %s:%d: %q is not a module file", p, lineNo, modPath)
		}
		e := &entry{path: t.abs(strings.TrimSpace(modPath)), loaded: true}
		for _, d := range strings.Fields(depList) {
			dn, ok := trimSuffix(filepath.Base(d))
			if !ok {
				return false, fmt.Errorf("kmod: %s:%d: %q is not a module file", p, lineNo, d)
			}
			e.deps = append(e.deps, dn)
		}
		// depmod writes each name once; if a hand-edited file repeats
		// one, the first line wins, as it does for modprobe.
		if _, dup := t.mods[name]; !dup {
			t.mods[name] = e
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("kmod: %s: %w", p, err)
	}
	return len(t.mods) > 0, nil
}

// abs turns a modules.dep path into an absolute one. Very old depmod
// versions wrote absolute paths, which are kept as they are.
func (t *Tree) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(t.Dir, p)
}

// walk indexes module files by name without reading them, so Open stays
// fast even when every module is xz-compressed.
func (t *Tree) walk() error {
	// WalkDir visits entries in lexical order, which makes the choice
	// between two files with the same module name deterministic: the
	// first one wins. It does not follow symlinks, so the build and
	// source links of an installed tree are not descended into.
	return filepath.WalkDir(t.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("kmod: %w", err)
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		name, ok := trimSuffix(d.Name())
		if !ok {
			return nil
		}
		if _, dup := t.mods[name]; !dup {
			t.mods[name] = &entry{path: p}
		}
		return nil
	})
}

// Names returns every module name in the index, sorted, which is useful
// for diagnostics and for callers that want to select by pattern.
func (t *Tree) Names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.mods))
	for n := range t.mods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the module called name; '-' and '_' are interchangeable.
//
// Without modules.dep this reads the module's .modinfo, and a module whose
// metadata cannot be read is reported as absent; use Resolve to learn why.
func (t *Tree) Lookup(name string) (Module, bool) {
	m, err := t.module(Normalize(name))
	return m, err == nil
}

// Builtin reports whether name is compiled into the kernel according to
// modules.builtin, so callers can accept it without a module file.
func (t *Tree) Builtin(name string) bool {
	return t.builtin[Normalize(name)]
}

// module returns the normalized module name's record, reading its
// dependencies from the file if that has not been done yet.
func (t *Tree) module(name string) (Module, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.mods[name]
	if !ok {
		return Module{}, fmt.Errorf("kmod: %s: %w", name, ErrNotFound)
	}
	if !e.loaded {
		// The error is cached too: retrying a corrupt file gives
		// nothing but another slow decompression.
		e.deps, e.err = readDepends(e.path)
		e.loaded = true
	}
	if e.err != nil {
		return Module{}, fmt.Errorf("kmod: %s: %w", name, e.err)
	}
	return Module{Name: name, Path: e.path, Deps: append([]string(nil), e.deps...)}, nil
}
