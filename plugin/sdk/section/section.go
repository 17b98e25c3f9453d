// Package section decodes a plugin's configuration section: the JSON the
// host sends for [dcs.<name>] (or any other plugin section) in Validate and
// Configure. It gives every plugin the same behaviour, so that operators meet
// one set of rules whatever the plugin:
//
//   - an empty section or null is an empty table; anything but a JSON table
//     is refused;
//   - a key the plugin does not declare is refused, naming the known keys;
//   - every problem is collected, each under its key path ("hosts[1]",
//     "ports[0].name", "labels.app"), into one *sdk.ConfigError that crosses
//     the wire intact;
//   - values take the forms Patroni's configuration takes, including what an
//     environment variable carries: booleans as true/false or Patroni's
//     strings (yes, on, 1, ...), lists as a list or one comma-separated
//     string, ports and durations as numbers or strings;
//   - TLS keys (cacert, cert, key, key_password) become a *tls.Config with
//     TLS, file problems reported under the key naming the file.
//
// A plugin declares each key by decoding it, checks what belongs together,
// and ends with Err:
//
//	d, err := section.New(data)
//	if err != nil {
//		return nil, err // not JSON, or not a table
//	}
//	c := &Config{Port: 2379}
//	d.Strings("hosts", &c.Hosts)
//	d.Port("port", &c.Port)
//	d.String("cacert", &c.CACert)
//	if d.Has("srv") && !d.Failed("srv") { ... }
//	return c, d.Err() // unknown keys are reported here
//
// Values of other shapes are read with Value and checked by the plugin,
// which reports problems with Add and describes wrong values with Describe;
// Table decodes a nested table the same way as the section. HostPort,
// ParsePort and RedactURL read and print addresses the same way in every
// plugin.
package section

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Decoder reads the keys of one table of a section and collects the
// problems found. Each decoding method declares its key: Err refuses every
// key of the table that no method asked for.
type Decoder struct {
	errs   *sdk.ConfigError
	prefix string // key path of the table, with a trailing dot; "" at the top
	raw    map[string]any
	known  map[string]bool
	done   bool
}

// Parse reads the JSON of a section into plain Go values: nil for an empty
// input or null, map[string]any for a table, []any for a list, json.Number
// for a number. Invalid JSON is a *sdk.ConfigError at the empty path. It
// suits a section whose top level is not a table of keys; New is Parse for
// one that is.
func Parse(data []byte) (any, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, problem("", "not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, problem("", "not valid JSON: more after the value")
	}
	return v, nil
}

// New parses a section that is a table of keys. An empty section or null
// is an empty table. Input that is not JSON, or not a table, is returned as
// a *sdk.ConfigError at the empty path and no Decoder.
func New(data []byte) (*Decoder, error) {
	v, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = map[string]any{}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, problem("", "must be a table of keys, got %s", Describe(v))
	}
	return &Decoder{errs: &sdk.ConfigError{}, raw: m, known: map[string]bool{}}, nil
}

func problem(path, format string, args ...any) *sdk.ConfigError {
	errs := &sdk.ConfigError{}
	errs.Add(path, format, args...)
	return errs
}

// Table decodes v, found at path, as a nested table whose problems join
// d's. It reports a v that is not a table and returns false. Call Done on
// the nested Decoder once its keys are decoded.
func (d *Decoder) Table(path string, v any) (*Decoder, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		d.Add(path, "must be a table, got %s", Describe(v))
		return nil, false
	}
	return &Decoder{errs: d.errs, prefix: path + ".", raw: m, known: map[string]bool{}}, true
}

// Path is the key path of key in this table ("ports[0].name" in a nested
// one).
func (d *Decoder) Path(key string) string { return d.prefix + key }

// Add records a problem at a key path (Path for a key of this table).
func (d *Decoder) Add(path, format string, args ...any) { d.errs.Add(path, format, args...) }

// Failed reports whether a problem was recorded at path or below it
// (path[i], path.key), so that a check of a value that did not decode can be
// skipped instead of reported twice.
func (d *Decoder) Failed(path string) bool {
	for _, p := range d.errs.Problems {
		if p.Path == path || strings.HasPrefix(p.Path, path+"[") || strings.HasPrefix(p.Path, path+".") {
			return true
		}
	}
	return false
}

// Has declares key and reports whether the table sets it.
func (d *Decoder) Has(key string) bool {
	d.known[key] = true
	_, ok := d.raw[key]
	return ok
}

// Value declares key and returns its raw value, as Parse returns it, and
// whether the table sets it.
func (d *Decoder) Value(key string) (any, bool) {
	d.known[key] = true
	v, ok := d.raw[key]
	return v, ok
}

// String decodes a string key into dst; dst keeps its value when the key is
// absent or wrong.
func (d *Decoder) String(key string, dst *string) {
	v, ok := d.Value(key)
	if !ok {
		return
	}
	s, ok := v.(string)
	if !ok {
		d.Add(d.Path(key), "must be a string, got %s", Describe(v))
		return
	}
	*dst = s
}

// Bool decodes a boolean key: true or false, or a string Patroni reads as
// one (true/false, yes/no, on/off, 1/0, y/n, t/f, in any case), which is
// what an environment variable carries.
func (d *Decoder) Bool(key string, dst *bool) {
	v, ok := d.Value(key)
	if !ok {
		return
	}
	switch x := v.(type) {
	case bool:
		*dst = x
		return
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "yes", "on", "1", "y", "t":
			*dst = true
			return
		case "false", "no", "off", "0", "n", "f":
			*dst = false
			return
		}
	}
	d.Add(d.Path(key), "must be true or false, got %s", Describe(v))
}

// Strings decodes a list of strings, or one comma-separated string (blank
// items dropped), into dst. A wrong item is reported as key[i].
func (d *Decoder) Strings(key string, dst *[]string) {
	v, ok := d.Value(key)
	if !ok {
		return
	}
	path := d.Path(key)
	var out []string
	switch x := v.(type) {
	case string:
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case []any:
		for i, item := range x {
			s, ok := item.(string)
			if !ok {
				d.Add(fmt.Sprintf("%s[%d]", path, i), "must be a string, got %s", Describe(item))
				continue
			}
			out = append(out, s)
		}
	default:
		d.Add(path, "must be a list of strings or a comma-separated string, got %s", Describe(v))
		return
	}
	*dst = out
}

// Port decodes a TCP port, a number or a string, from 1 to 65535.
func (d *Decoder) Port(key string, dst *int) {
	v, ok := d.Value(key)
	if !ok {
		return
	}
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		d.Add(d.Path(key), "must be a port number, got %s", Describe(v))
		return
	}
	p, err := ParsePort(s)
	if err != nil {
		d.Add(d.Path(key), "%v", err)
		return
	}
	*dst = p
}

// ParsePort reads a TCP port from 1 to 65535 (the port of a "host:port").
func ParsePort(s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

// Duration decodes a positive duration: a string such as "5s" or "1m30s",
// or a number of seconds.
func (d *Decoder) Duration(key string, dst *time.Duration) {
	v, ok := d.Value(key)
	if !ok {
		return
	}
	path := d.Path(key)
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil || f <= 0 || f > math.MaxInt64/float64(time.Second) {
			d.Add(path, "must be a positive number of seconds or a duration such as \"5s\", got %s", x)
			return
		}
		*dst = time.Duration(f * float64(time.Second))
	case string:
		dur, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			d.Add(path, "must be a duration such as \"5s\": %v", err)
			return
		}
		if dur <= 0 {
			d.Add(path, "must be positive, got %s", x)
			return
		}
		*dst = dur
	default:
		d.Add(path, "must be a duration such as \"5s\", got %s", Describe(v))
	}
}

// Done refuses every key of the table that no decoding method declared,
// naming the known ones. It runs once; Err calls it for the top table.
func (d *Decoder) Done() {
	if d.done {
		return
	}
	d.done = true
	var unknown []string
	for k := range d.raw {
		if !d.known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return
	}
	known := make([]string, 0, len(d.known))
	for k := range d.known {
		known = append(known, k)
	}
	sort.Strings(known)
	sort.Strings(unknown)
	for _, k := range unknown {
		d.Add(d.Path(k), "unknown key (known: %s)", strings.Join(known, ", "))
	}
}

// Err refuses the undeclared keys (Done) and returns every problem found,
// as one *sdk.ConfigError, or nil.
func (d *Decoder) Err() error {
	d.Done()
	return d.errs.OrNil()
}

// Describe names a decoded value for a problem message: `a string "x"`,
// `a number 5`, `a boolean true`, `a list`, `a table` or `null`.
func Describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("a string %q", x)
	case bool:
		return fmt.Sprintf("a boolean %v", x)
	case json.Number:
		return "a number " + x.String()
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// Secret is a configuration string that never prints or marshals its
// value; an empty one prints empty, so that a dump still shows it unset.
type Secret string

const redacted = "<redacted>"

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// HostPort reads "host[:port]": a name, an IPv4 address or an IPv6 address
// (in brackets when a port follows). port is 0 when s has none. A URL, a
// path or user info is refused, so that a value meant for another key is
// not read as a host name.
func HostPort(s string) (host string, port int, err error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", 0, errors.New("empty host")
	case strings.Contains(s, "://"):
		return "", 0, fmt.Errorf("%q must be host[:port], not a URL", s)
	case strings.ContainsAny(s, "/ \t@?#"):
		return "", 0, fmt.Errorf("%q is not a host[:port]", s)
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a name, an IPv4 address or a bare IPv6 address.
		if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
			return ip.String(), 0, nil
		}
		if strings.ContainsAny(s, ":[]") {
			return "", 0, fmt.Errorf("%q is not a host[:port]", s)
		}
		return s, 0, nil
	}
	if h == "" {
		return "", 0, fmt.Errorf("%q has no host", s)
	}
	if port, err = ParsePort(p); err != nil {
		return "", 0, fmt.Errorf("%q: %v", s, err)
	}
	return h, port, nil
}

// RedactURL returns a URL without the password of its user info, for
// printing a configuration; text that does not parse is returned as is.
func RedactURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return s
	}
	return u.Redacted()
}
