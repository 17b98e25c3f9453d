package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// File is the configuration file the value came from; empty for a
	// value that did not come from a file (the DCS, or the environment).
	File string
	// Env names the environment variable the value came from, if any.
	Env string
	// Line is the 1-based line in File, or 0 when unknown.
	Line int
	// Path is the dotted key path ("postgresql.data_dir", "tags.nosync",
	// "bootstrap.initdb[2]").
	Path string
	// Message says what is wrong.
	Message string
}

// String renders the problem as "file:line: path: message", or with
// "env VAR" in place of the file for a value from the environment.
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.Env != "":
		b.WriteString("env ")
		b.WriteString(p.Env)
		b.WriteString(": ")
	case p.File != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		b.WriteString(p.File)
		b.WriteString(": ")
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems lists every problem found in a configuration. It is the error
// returned by Load and Parse when the configuration is invalid.
type Problems []Problem

// Error renders one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error when it holds problems, and nil otherwise
// (avoiding a non-nil error interface holding an empty list).
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// sort orders problems by line (lines unknown last), then by path, so that
// reports are stable.
func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if (a.Line == 0) != (b.Line == 0) {
			return a.Line != 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Message < b.Message
	})
}

// ProblemAt is a problem with the value at keyPath ("restapi.certfile")
// found after loading, placed at the key's file line or environment
// variable, as Load's own problems are.
func (c *Config) ProblemAt(keyPath, message string) Problem {
	d := &decoder{file: c.file, lines: c.lines, env: c.env}
	d.addAt(keyPath, "%s", message)
	return d.probs[0]
}

// at reports whether a problem is recorded at key or at a key that holds
// it ("slots.s" holds "slots.s.type").
func (ps Problems) at(key string) bool {
	for _, p := range ps {
		if p.Path == key || strings.HasPrefix(key, p.Path+".") || strings.HasPrefix(key, p.Path+"[") {
			return true
		}
	}
	return false
}
