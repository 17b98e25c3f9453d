package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// A value tree is what the decoder walks: TOML (or JSON) parsed into
// map[string]any tables, []any arrays and scalars (string, int64, float64,
// bool, TOML date/time values), plus envValue for environment overrides.

// envValue is a raw environment override not yet interpreted: how it is read
// depends on the type of the key it lands on (a string key takes it as is).
type envValue struct {
	name string // the variable, e.g. CUSTOS_RESTAPI_LISTEN
	raw  string
}

// path is a key path; an element starting with indexMark is an array index.
type path []string

const indexMark = "\x00"

func (p path) key(k string) path {
	out := make(path, len(p), len(p)+1)
	copy(out, p)
	return append(out, k)
}

func (p path) index(i int) path {
	return p.key(indexMark + strconv.Itoa(i))
}

// String renders the path the way a user writes it in TOML:
// postgresql.parameters."auto_explain.log_min_duration", bootstrap.initdb[1].
func (p path) String() string {
	var b strings.Builder
	for i, e := range p {
		if rest, ok := strings.CutPrefix(e, indexMark); ok {
			b.WriteString("[" + rest + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(e))
	}
	return b.String()
}

func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return strconv.Quote(k)
		}
	}
	return k
}

// errLineProbe is returned by lineProbe so that the TOML decoder reports the
// position of the key it was decoding.
var errLineProbe = errors.New("line probe")

// lineProbe finds a key's line. BurntSushi/toml keeps key positions private
// but puts them in the ParseError of a failing Unmarshaler, so decoding each
// Primitive into a lineProbe yields its line.
type lineProbe struct{}

func (lineProbe) UnmarshalTOML(any) error { return errLineProbe }

// parseTOML parses data into a value tree and the line of every key, keyed
// by the rendered key path. Implicit tables (dcs in [dcs.etcd3]) get the
// line of their first key. A syntax error is returned as a Problem.
func parseTOML(data []byte) (tree map[string]any, lines map[string]int, prob *Problem) {
	defer func() {
		// The TOML library is fuzzed upstream; this only keeps a parser bug
		// from taking the agent down with a stack trace instead of a message.
		if r := recover(); r != nil {
			tree, lines = nil, nil
			prob = &Problem{Message: fmt.Sprintf("cannot parse TOML: %v", r)}
		}
	}()
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		p := Problem{Message: "TOML syntax error: " + err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p.Line = pe.Position.Line
			p.Message = "TOML syntax error: " + pe.Message
		}
		return nil, nil, &p
	}
	tree = make(map[string]any, len(top))
	lines = make(map[string]int)
	walkPrimitives(&md, nil, top, tree, lines)
	return tree, lines, nil
}

// walkPrimitives fills out and lines from one TOML table and returns the
// smallest line seen in it (0 if none).
func walkPrimitives(md *toml.MetaData, p path, prims map[string]toml.Primitive, out map[string]any, lines map[string]int) int {
	keys := make([]string, 0, len(prims))
	for k := range prims {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	first := 0
	for _, k := range keys {
		prim := prims[k]
		kp := p.key(k)
		line := 0
		var pe toml.ParseError
		if err := md.PrimitiveDecode(prim, lineProbe{}); errors.As(err, &pe) {
			line = pe.Line
		}
		var sub map[string]toml.Primitive
		// Implicit tables ([dcs.etcd3] implies dcs) have no recorded type.
		if t := md.Type(kp...); (t == "Hash" || t == "") && md.PrimitiveDecode(prim, &sub) == nil {
			m := make(map[string]any, len(sub))
			if inner := walkPrimitives(md, kp, sub, m, lines); line == 0 {
				line = inner
			}
			out[k] = m
		} else {
			var v any
			if err := md.PrimitiveDecode(prim, &v); err != nil {
				v = nil
			}
			out[k] = normalize(v)
		}
		if line > 0 {
			lines[kp.String()] = line
			if first == 0 || line < first {
				first = line
			}
		}
	}
	return first
}

// normalize turns arrays of tables into []any so the decoder sees one array
// shape.
func normalize(v any) any {
	switch x := v.(type) {
	case []map[string]any:
		out := make([]any, len(x))
		for i, m := range x {
			out[i] = normalize(m)
		}
		return out
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = normalize(x[k])
		}
		return x
	}
	return v
}

// parseTOMLValue parses s as a single TOML value (`["a", "b"]`, `{k = 1}`,
// `42`, `true`).
func parseTOMLValue(s string) (any, bool) {
	var holder struct {
		V any `toml:"v"`
	}
	md, err := toml.Decode("v = "+s, &holder)
	if err != nil || !md.IsDefined("v") {
		return nil, false
	}
	for _, k := range md.Keys() {
		if k[0] != "v" {
			return nil, false // "1\nx = 2" is not one value
		}
	}
	return normalize(holder.V), true
}

// typeName describes a tree value's type for messages.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "null"
	}
	return "a date/time"
}
