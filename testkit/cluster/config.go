package cluster

import (
	"fmt"
	"strings"
)

// Config is an agent configuration file in TOML, built table by table: the
// harness writes the lines every member needs, then the caller's
// Options.Edit adds or replaces lines before the file is written. Tables
// come out in the order they were first used, top-level keys first.
type Config struct {
	comments []string
	tables   []*table
	raw      []string
}

type table struct {
	name  string
	lines []string
}

// Comment adds a comment line at the top of the file.
func (c *Config) Comment(format string, args ...any) {
	c.comments = append(c.comments, "# "+fmt.Sprintf(format, args...))
}

// Set sets key in table ("" is the top level) to value, replacing an
// earlier value of the key. value is written as TOML: a string is quoted,
// a []string is an array of strings, a Literal is written as it is, and
// anything else as fmt prints it (ints, bools).
func (c *Config) Set(tableName, key string, value any) {
	c.Line(tableName, key+" = "+TOMLValue(value))
}

// Line adds a "key = value" line to table, replacing an earlier line of
// the same key; a line without " = " is added as it is.
func (c *Config) Line(tableName, line string) {
	t := c.table(tableName)
	if key, _, ok := strings.Cut(line, "="); ok {
		key = strings.TrimSpace(key)
		for i, l := range t.lines {
			if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
				t.lines[i] = line
				return
			}
		}
	}
	t.lines = append(t.lines, line)
}

// Table makes sure table exists (a table that only holds sub-tables, or an
// empty one), and keeps its place in the order.
func (c *Config) Table(name string) { c.table(name) }

// Raw appends text after every table, e.g. a table of its own with its
// lines.
func (c *Config) Raw(lines ...string) { c.raw = append(c.raw, lines...) }

// Has reports whether table has a line for key.
func (c *Config) Has(tableName, key string) bool {
	for _, t := range c.tables {
		if t.name != tableName {
			continue
		}
		for _, l := range t.lines {
			if k, _, ok := strings.Cut(l, "="); ok && strings.TrimSpace(k) == key {
				return true
			}
		}
	}
	return false
}

func (c *Config) table(name string) *table {
	for _, t := range c.tables {
		if t.name == name {
			return t
		}
	}
	t := &table{name: name}
	if name == "" {
		// The top level comes first whenever it is first used.
		c.tables = append([]*table{t}, c.tables...)
	} else {
		c.tables = append(c.tables, t)
	}
	return t
}

// Bytes is the file.
func (c *Config) Bytes() []byte {
	var b strings.Builder
	for _, l := range c.comments {
		b.WriteString(l + "\n")
	}
	for i, t := range c.tables {
		if t.name != "" {
			if i > 0 || len(c.comments) > 0 {
				b.WriteString("\n")
			}
			b.WriteString("[" + t.name + "]\n")
		}
		for _, l := range t.lines {
			b.WriteString(l + "\n")
		}
	}
	if len(c.raw) > 0 {
		b.WriteString("\n")
	}
	for _, l := range c.raw {
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

// Literal is TOML written as it is by Config.Set.
type Literal string

// TOMLValue writes v as a TOML value (see Config.Set).
func TOMLValue(v any) string {
	switch v := v.(type) {
	case Literal:
		return string(v)
	case string:
		return TOMLString(v)
	case []string:
		quoted := make([]string, len(v))
		for i, s := range v {
			quoted[i] = TOMLString(s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	default:
		return fmt.Sprint(v)
	}
}

// TOMLString is s as a TOML basic string.
func TOMLString(s string) string { return `"` + TOMLEscape(s) + `"` }

// TOMLEscape escapes what a TOML basic string (or a comment) cannot hold
// as it is.
func TOMLEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
