package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// parseDuration reads a local-config duration: integer seconds, or a Go
// duration string ("30s", "1m30s"); a plain numeric string is seconds.
func parseDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case int64:
		if x > math.MaxInt64/int64(time.Second) || x < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("out of range: %d seconds", x)
		}
		return time.Duration(x) * time.Second, nil
	case float64:
		if math.IsNaN(x) || math.Abs(x) > float64(math.MaxInt64/int64(time.Second)) {
			return 0, fmt.Errorf("out of range: %v seconds", x)
		}
		return time.Duration(x * float64(time.Second)), nil
	case string:
		s := strings.TrimSpace(x)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return parseDuration(n)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: want integer seconds or a duration such as \"30s\"", x)
		}
		return d, nil
	}
	return 0, fmt.Errorf("wrong type: expected integer seconds or a duration string, got %s", typeName(v))
}

// Size is a number of bytes. In the config it is an integer (bytes) or a
// string with a PostgreSQL unit ("16MB", "1GB", "512kB"; units are powers of
// 1024). It marshals to JSON as an integer, as Patroni stores it.
type Size int64

// sizeUnits are PostgreSQL's memory units (case-insensitive here).
var sizeUnits = map[string]int64{
	"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40,
}

// ParseSize reads an integer byte count or a number with a unit.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(s[:i]), strings.ToLower(strings.TrimSpace(s[i:]))
	mult := int64(1)
	if unit != "" {
		m, ok := sizeUnits[unit]
		if !ok {
			return 0, fmt.Errorf("bad size %q: unknown unit %q (use B, kB, MB, GB or TB)", s, s[i:])
		}
		mult = m
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: want bytes or a number with a unit such as \"16MB\"", s)
	}
	if n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, fmt.Errorf("bad size %q: out of range", s)
	}
	return Size(n * mult), nil
}

func (s *Size) decodeTree(d *decoder, p path, v any) {
	switch x := v.(type) {
	case int64:
		*s = Size(x)
	case float64:
		n, ok := asInt(x)
		if !ok {
			d.add(p, "bad size %v: want whole bytes", x)
			return
		}
		*s = Size(n)
	case string:
		n, err := ParseSize(x)
		if err != nil {
			d.add(p, "%v", err)
			return
		}
		*s = n
	default:
		d.wrongType(p, "a size (bytes or a string such as \"16MB\")", v)
	}
}

// Seconds is a duration in whole seconds, the unit of Patroni's dynamic
// configuration. It is read from an integer, a numeric string or a string
// with a PostgreSQL time unit ("30min", "1h"), and marshals as an integer.
type Seconds int

// Duration converts to a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// timeUnits are PostgreSQL's time units, in seconds.
var timeUnits = map[string]float64{
	"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400,
}

func parseSeconds(v any) (Seconds, error) {
	switch x := v.(type) {
	case int64, float64:
		n, ok := asInt(x)
		if !ok || n > math.MaxInt32 || n < math.MinInt32 {
			return 0, fmt.Errorf("bad duration %v: want whole seconds", x)
		}
		return Seconds(n), nil
	case string:
		s := strings.TrimSpace(x)
		if n, ok := asInt(s); ok {
			return parseSeconds(n)
		}
		i := len(s)
		for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
			i--
		}
		unit, ok := timeUnits[strings.TrimSpace(s[i:])]
		n, err := strconv.ParseInt(strings.TrimSpace(s[:i]), 10, 64)
		if !ok || err != nil || math.Abs(float64(n)*unit) > math.MaxInt32 {
			return 0, fmt.Errorf("bad duration %q: want whole seconds or a number with a unit (ms, s, min, h, d)", x)
		}
		return Seconds(math.Round(float64(n) * unit)), nil
	}
	return 0, fmt.Errorf("wrong type: expected seconds (an integer), got %s", typeName(v))
}

func (s *Seconds) decodeTree(d *decoder, p path, v any) {
	n, err := parseSeconds(v)
	if err != nil {
		d.add(p, "%v", err)
		return
	}
	*s = n
}

// Param is the value of a PostgreSQL parameter (GUC) or recovery setting:
// a string, an integer, a float or a boolean, kept as written.
type Param struct {
	v any
}

// NewParam wraps a string, int, int64, float64 or bool value.
func NewParam(v any) Param {
	if i, ok := v.(int); ok {
		v = int64(i)
	}
	return Param{v: v}
}

// Raw returns the value as written: string, int64, float64 or bool.
func (p Param) Raw() any { return p.v }

// String renders the value as postgresql.conf expects it (booleans as
// on/off).
func (p Param) String() string {
	switch x := p.v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "on"
		}
		return "off"
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(p.v)
}

// MarshalJSON writes the value as written.
func (p Param) MarshalJSON() ([]byte, error) { return json.Marshal(p.v) }

// UnmarshalJSON reads a string, number or boolean.
func (p *Param) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string, bool:
		p.v = x
	case float64:
		if n, ok := asInt(x); ok {
			p.v = n
		} else {
			p.v = x
		}
	default:
		return errors.New("parameter value must be a string, a number or a boolean")
	}
	return nil
}

func (p *Param) decodeTree(d *decoder, pa path, v any) {
	switch v.(type) {
	case string, int64, float64, bool:
		p.v = v
	default:
		d.wrongType(pa, "a string, number or boolean", v)
	}
}

// Option is one command-line option of a tool (initdb, pg_basebackup,
// pg_rewind), Patroni style: a bare name ("data-checksums") or a name with
// a value ({encoding = "UTF8"}).
type Option struct {
	Name     string
	Value    string
	HasValue bool
}

// Arg renders the option as "--name" or "--name=value".
func (o Option) Arg() string {
	if o.HasValue {
		return "--" + o.Name + "=" + o.Value
	}
	return "--" + o.Name
}

// MarshalJSON writes the Patroni form: "name" or {"name": "value"}.
func (o Option) MarshalJSON() ([]byte, error) {
	if o.HasValue {
		return json.Marshal(map[string]string{o.Name: o.Value})
	}
	return json.Marshal(o.Name)
}

// Options is a tool's option list. As in Patroni it is written as a list
// whose items are strings or single-key tables, or as a table.
type Options []Option

// Args renders every option.
func (os Options) Args() []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.Arg()
	}
	return out
}

// Has reports whether an option of that name is present.
func (os Options) Has(name string) bool {
	for _, o := range os {
		if o.Name == name {
			return true
		}
	}
	return false
}

func (os *Options) decodeTree(d *decoder, p path, v any) {
	var out Options
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if o, ok := optionValue(d, p.key(k), k, x[k]); ok {
				out = append(out, o)
			}
		}
	case []any:
		for i, item := range x {
			ip := p.index(i)
			switch it := item.(type) {
			case string:
				out = append(out, Option{Name: strings.TrimPrefix(it, "--")})
			case map[string]any:
				if len(it) != 1 {
					d.add(ip, "an option table must have exactly one key, got %d", len(it))
					continue
				}
				for k, val := range it {
					if o, ok := optionValue(d, ip, k, val); ok {
						out = append(out, o)
					}
				}
			default:
				d.wrongType(ip, "a string or a single-key table", item)
			}
		}
	default:
		d.wrongType(p, "an array of options or a table", v)
		return
	}
	*os = out
}

func optionValue(d *decoder, p path, name string, v any) (Option, bool) {
	name = strings.TrimPrefix(name, "--")
	switch x := v.(type) {
	case string:
		return Option{Name: name, Value: x, HasValue: true}, true
	case int64, float64:
		return Option{Name: name, Value: fmt.Sprint(x), HasValue: true}, true
	case bool:
		// {data-checksums = true} means the bare flag; false drops it.
		return Option{Name: name}, x
	}
	d.wrongType(p, "a string, number or boolean option value", v)
	return Option{}, false
}

// SyncMode is Patroni's synchronous_mode: off, on, or quorum.
type SyncMode string

// Synchronous replication modes.
const (
	SyncOff    SyncMode = "off"
	SyncOn     SyncMode = "on"
	SyncQuorum SyncMode = "quorum"
)

// MarshalJSON writes what Patroni writes: a boolean, or "quorum".
func (m SyncMode) MarshalJSON() ([]byte, error) {
	switch m {
	case SyncQuorum:
		return json.Marshal("quorum")
	case SyncOn:
		return json.Marshal(true)
	}
	return json.Marshal(false)
}

func (m *SyncMode) decodeTree(d *decoder, p path, v any) {
	if s, ok := v.(string); ok && strings.EqualFold(strings.TrimSpace(s), "quorum") {
		*m = SyncQuorum
		return
	}
	b, ok := asBool(v)
	if !ok {
		if _, isString := v.(string); isString {
			d.add(p, "invalid value %q: want on, off or quorum (or a boolean)", v)
		} else {
			d.wrongType(p, "a boolean or one of on, off, quorum", v)
		}
		return
	}
	if b {
		*m = SyncOn
	} else {
		*m = SyncOff
	}
}
