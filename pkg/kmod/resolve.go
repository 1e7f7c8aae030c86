package kmod

import (
	"fmt"
	"strings"
)

// Resolve returns the modules needed to load names, each exactly once,
// every module after all of its dependencies, so the crash kernel's init
// can load the list front to back without any logic of its own.
//
// The order is a depth-first post-order over names as given and each
// module's dependencies as listed, hence deterministic for a given tree.
// Builtin names are skipped because there is nothing to load. A name that
// is neither a module nor builtin is an error wrapping ErrNotFound; a
// dependency cycle is an error wrapping ErrCycle.
func (t *Tree) Resolve(names ...string) ([]Module, error) {
	r := resolver{t: t, state: map[string]visitState{}}
	for _, n := range names {
		if err := r.visit(Normalize(n), ""); err != nil {
			return nil, err
		}
	}
	return r.out, nil
}

type visitState int

const (
	unvisited visitState = iota
	visiting
	done
)

// resolver holds the state of one Resolve call, keeping Tree itself free
// of per-call data so concurrent Resolve calls do not interfere.
type resolver struct {
	t     *Tree
	state map[string]visitState
	stack []string // names being visited, for cycle messages
	out   []Module
}

// visit appends name and its dependency closure to r.out. parent is the
// module that needs name, or "" for a requested name, so that a missing
// dependency is reported together with who wanted it.
func (r *resolver) visit(name, parent string) error {
	switch r.state[name] {
	case done:
		return nil
	case visiting:
		return fmt.Errorf("kmod: %s: %w: %s", name, ErrCycle, r.cycle(name))
	}
	if r.t.Builtin(name) {
		r.state[name] = done
		return nil
	}
	m, err := r.t.module(name)
	if err != nil {
		if parent != "" {
			return fmt.Errorf("%w (needed by %s)", err, parent)
		}
		return err
	}
	r.state[name] = visiting
	r.stack = append(r.stack, name)
	for _, d := range m.Deps {
		if err := r.visit(d, name); err != nil {
			return err
		}
	}
	r.stack = r.stack[:len(r.stack)-1]
	r.state[name] = done
	r.out = append(r.out, m)
	return nil
}

// cycle renders the part of the visit stack that loops back to name, e.g.
// "a -> b -> a", which is what a user needs to fix the tree.
func (r *resolver) cycle(name string) string {
	i := len(r.stack) - 1
	for i > 0 && r.stack[i] != name {
		i--
	}
	return strings.Join(append(append([]string(nil), r.stack[i:]...), name), " -> ")
}
