package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// DCS is the [dcs.<name>] section. Core does not know its keys: the DCS
// plugin named by the section validates it. It prints and marshals with
// secret-looking values redacted; DCSConfigJSON gives the plugin the real
// values.
type DCS struct {
	name string
	raw  map[string]any
}

// Name returns the section's name, e.g. "etcd3".
func (s DCS) Name() string { return s.name }

// Format prints the section with secret-looking values redacted.
func (s DCS) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmtVerb(f, verb), map[string]any{s.name: redactTable(s.raw)})
}

// MarshalJSON writes {"<name>": {...}} with secret-looking values redacted;
// it is for logs.
func (s DCS) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{s.name: redactTable(s.raw)})
}

// DCSName returns the name of the DCS section, e.g. "etcd3".
func (c *Config) DCSName() string { return c.DCS.name }

// DCSConfigJSON returns the JSON of the DCS section with its real values:
// what the DCS plugin receives in Validate and Configure.
func (c *Config) DCSConfigJSON() ([]byte, error) {
	raw := c.DCS.raw
	if raw == nil {
		raw = map[string]any{}
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("encoding [dcs.%s] as JSON: %w", c.DCS.name, err)
	}
	return b, nil
}

// DCSProblem turns a problem a DCS plugin reported for a key path inside
// its section ("hosts", "tls.cacert") into a Problem naming the full path
// and the key's file line (or the environment variable that set it), e.g.
// "custos.toml:12: dcs.etcd3.hosts: ...". The line is that of the nearest
// enclosing key present in the file.
func (c *Config) DCSProblem(keyPath, message string) Problem {
	full := "dcs." + quoteKey(c.DCS.name)
	if keyPath != "" {
		full += "." + keyPath
	}
	d := &decoder{file: c.file, lines: c.lines, env: c.env}
	d.addAt(full, "%s", message)
	return d.probs[0]
}

// DCSLine returns the file line of a key path inside the DCS section, or 0
// when the key is not in the file.
func (c *Config) DCSLine(keyPath string) int {
	return c.DCSProblem(keyPath, "").Line
}

// decodeDCS checks that there is exactly one [dcs.<name>] table.
func decodeDCS(d *decoder, v any) DCS {
	if v == nil {
		d.addAt("dcs", "missing required value: configure exactly one DCS section, e.g. [dcs.etcd3]")
		return DCS{}
	}
	sections, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path{"dcs"}, "a table of DCS sections ([dcs.<name>])", v)
		return DCS{}
	}
	if len(sections) == 0 {
		d.addAt("dcs", "missing required value: configure exactly one DCS section, e.g. [dcs.etcd3]")
		return DCS{}
	}
	names := sortedKeys(sections)
	// Report a second section at the later line: the earlier one is taken
	// as meant. A section from the environment (no line) comes last.
	sort.SliceStable(names, func(i, j int) bool {
		li, lj := d.lines[path{"dcs", names[i]}.String()], d.lines[path{"dcs", names[j]}.String()]
		if (li == 0) != (lj == 0) {
			return li != 0
		}
		return li < lj
	})
	var out DCS
	for _, name := range names {
		p := path{"dcs", name}
		table, ok := sections[name].(map[string]any)
		if !ok {
			d.wrongType(p, "a table ([dcs."+quoteKey(name)+"])", sections[name])
			continue
		}
		if !validDCSName(name) {
			d.add(p, "invalid DCS name %q: use letters, digits, '-' and '_'", name)
			continue
		}
		if out.name != "" {
			d.add(p, "conflicting values: only one DCS section is allowed, found [dcs.%s] and [dcs.%s]", out.name, name)
			continue
		}
		out = DCS{name: name, raw: resolveEnvTree(table).(map[string]any)}
	}
	return out
}

func validDCSName(name string) bool {
	return name != "" && quoteKey(name) == name && !strings.HasPrefix(name, "-")
}
