package config

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// redacted replaces a secret in printed or logged output.
const redacted = "[redacted]"

// Secret holds a sensitive value (a password, a key passphrase). Printing it
// with any fmt verb or marshalling it to JSON yields "[redacted]" (or "" when
// it is empty), so a config can be logged whole; Value gives the real value
// to the code that needs it.
type Secret struct {
	value string
}

// NewSecret wraps a sensitive value.
func NewSecret(value string) Secret { return Secret{value: value} }

// Value returns the real value.
func (s Secret) Value() string { return s.value }

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s.value != "" }

func (s Secret) shown() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// String returns "[redacted]" for a set secret and "" otherwise.
func (s Secret) String() string { return s.shown() }

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.shown()) }

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, %x...) print the
// redacted form.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, s.GoString())
		return
	}
	if verb == 'q' {
		_, _ = fmt.Fprintf(f, "%q", s.shown())
		return
	}
	_, _ = io.WriteString(f, s.shown())
}

// MarshalJSON writes the redacted form: JSON of a config is for logs.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.shown()) }

func (s *Secret) decodeTree(d *decoder, p path, v any) {
	str, ok := v.(string)
	if !ok {
		d.wrongType(p, "a string", v)
		return
	}
	s.value = str
}

// Table is a free-form TOML table kept as is (recovery_conf, a custom
// method's options). Values under keys that look secret (password, token,
// conninfo...) are redacted when the table is printed or marshalled; index
// the map to read them.
type Table map[string]any

// Format prints the table with secret-looking values redacted.
func (t Table) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmtVerb(f, verb), map[string]any(redactTable(t)))
}

// MarshalJSON writes the table with secret-looking values redacted.
func (t Table) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any(redactTable(t)))
}

func (t *Table) decodeTree(d *decoder, p path, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(p, "a table", v)
		return
	}
	*t = resolveEnvTree(m).(map[string]any)
}

// fmtVerb rebuilds the format directive so a wrapped value prints with the
// caller's flags.
func fmtVerb(f fmt.State, verb rune) string {
	var b strings.Builder
	b.WriteByte('%')
	for _, c := range "+-# 0" {
		if f.Flag(int(c)) {
			b.WriteRune(c)
		}
	}
	b.WriteRune(verb)
	return b.String()
}

// secretKey reports whether a free-form key likely holds a secret.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, word := range []string{"password", "passwd", "secret", "token", "conninfo", "auth_data", "credential"} {
		if strings.Contains(k, word) {
			return true
		}
	}
	return false
}

// redactTable copies a table, replacing secret-looking values.
func redactTable(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch {
		case secretKey(k):
			out[k] = redacted
		default:
			out[k] = redactValue(v)
		}
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return redactTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	}
	return v
}
