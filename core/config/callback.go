package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

const (
	// DefaultCallbackPluginTimeout bounds one delivery to a callback plugin
	// ([callback.<name>] timeout): a plugin tells a webhook or a load
	// balancer about a role change, which takes a round trip or a few
	// retries; one that has not answered in 30 s is stuck, and the events
	// after it wait their turn.
	DefaultCallbackPluginTimeout = 30 * time.Second
	// DefaultCallbackTimeout bounds one run of a [postgresql.callbacks]
	// script and of the pre_promote, before_stop and post_bootstrap hooks
	// (postgresql.callbacks.timeout). Patroni sets none; 60 s is as long as
	// pg_ctl_timeout's default, so a hook is never the slowest step of a
	// start, a stop or a promotion, and a hung script is killed rather than
	// holding the events behind it forever.
	DefaultCallbackTimeout = 60 * time.Second
	// BuiltinCallbackName names the built-in callback that runs the
	// [postgresql.callbacks] scripts; no [callback.<name>] section may take
	// it.
	BuiltinCallbackName = "exec"
)

// callbackTimeoutKey is the one key of a [callback.<name>] section that the
// agent reads itself; the plugin never sees it.
const callbackTimeoutKey = "timeout"

// CallbackPlugin is a [callback.<name>] section: the callback plugin named
// <name> is told about every lifecycle event. Core knows only its timeout
// key; the plugin validates the other keys. It prints and marshals with
// secret-looking values redacted; ConfigJSON gives the plugin the real
// values.
type CallbackPlugin struct {
	name string
	// Timeout bounds one delivery (the section's timeout key).
	Timeout time.Duration
	raw     map[string]any
}

// Name returns the section's name, which is the plugin's identity name.
func (s CallbackPlugin) Name() string { return s.name }

// ConfigJSON returns the JSON of the section without its timeout key,
// with its real values: what the plugin receives in Validate and Deliver.
func (s CallbackPlugin) ConfigJSON() ([]byte, error) {
	raw := s.raw
	if raw == nil {
		raw = map[string]any{}
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("encoding [callback.%s] as JSON: %w", quoteKey(s.name), err)
	}
	return b, nil
}

// redacted is the section as logged.
func (s CallbackPlugin) redacted() map[string]any {
	out := redactTable(s.raw)
	if out == nil {
		out = map[string]any{}
	}
	out[callbackTimeoutKey] = s.Timeout
	return out
}

// Format prints the section with secret-looking values redacted.
func (s CallbackPlugin) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmtVerb(f, verb), s.redacted())
}

// MarshalJSON writes the section with secret-looking values redacted; it
// is for logs.
func (s CallbackPlugin) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.redacted())
}

// CallbackNames returns the names of the [callback.<name>] sections,
// sorted.
func (c *Config) CallbackNames() []string {
	names := make([]string, 0, len(c.Callback))
	for n := range c.Callback {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CallbackProblem turns a problem a callback plugin reported for a key
// path inside its section into a Problem naming the full path
// (callback.<name>.<keyPath>) and the key's file line, as DCSProblem does.
func (c *Config) CallbackProblem(name, keyPath, message string) Problem {
	full := path{"callback", name}.String()
	if keyPath != "" {
		full += "." + keyPath
	}
	d := &decoder{file: c.file, lines: c.lines, env: c.env}
	d.addAt(full, "%s", message)
	return d.probs[0]
}

// decodeCallbacks reads the [callback.<name>] tables.
func decodeCallbacks(d *decoder, v any) map[string]CallbackPlugin {
	if v == nil {
		return nil
	}
	sections, ok := v.(map[string]any)
	if !ok {
		d.wrongType(path{"callback"}, "a table of callback plugin sections ([callback.<name>])", v)
		return nil
	}
	out := map[string]CallbackPlugin{}
	for _, name := range sortedKeys(sections) {
		p := path{"callback", name}
		table, ok := sections[name].(map[string]any)
		if !ok {
			d.wrongType(p, "a table ([callback."+quoteKey(name)+"])", sections[name])
			continue
		}
		if !validDCSName(name) {
			d.add(p, "invalid callback plugin name %q: use letters, digits, '-' and '_'", name)
			continue
		}
		if name == BuiltinCallbackName {
			d.add(p, "invalid callback plugin name %q: it names the built-in callback, whose scripts are [postgresql.callbacks]", name)
			continue
		}
		raw := resolveEnvTree(table).(map[string]any)
		s := CallbackPlugin{name: name, Timeout: DefaultCallbackPluginTimeout, raw: map[string]any{}}
		for k, val := range raw {
			if k != callbackTimeoutKey {
				s.raw[k] = val
				continue
			}
			timeout, err := parseDuration(val)
			switch {
			case err != nil:
				d.add(p.key(k), "%v", err)
			case timeout <= 0:
				d.add(p.key(k), "out of range: %v must be positive", timeout)
			default:
				s.Timeout = timeout
			}
		}
		out[name] = s
	}
	return out
}
