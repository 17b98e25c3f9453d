package ctl

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Configuration values are handled as JSON-like trees: map[string]any,
// []any, string, int64, float64, bool and nil, whether they come from
// /config (JSON, read by config.DecodeJSON) or from the operator (YAML).

// yaml11Bool are the plain scalars PyYAML (YAML 1.1) reads as booleans and
// yaml.v3 (YAML 1.2) as strings: `-p wal_log_hints=on` means true, as it
// does for patronictl.
var yaml11Bool = regexp.MustCompile(`^(?:yes|Yes|YES|true|True|TRUE|on|On|ON|no|No|NO|false|False|FALSE|off|Off|OFF)$`)

// decodeYAMLValue decodes one YAML document into a JSON-like tree; an
// empty document is nil.
func decodeYAMLValue(text []byte) (any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	return nodeValue(doc.Content[0], 0)
}

// maxYAMLDepth stops alias loops and absurd nesting.
const maxYAMLDepth = 100

func nodeValue(n *yaml.Node, depth int) (any, error) {
	if depth > maxYAMLDepth {
		return nil, errors.New("YAML nested too deeply")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return nodeValue(n.Content[0], depth+1)
	case yaml.AliasNode:
		return nodeValue(n.Alias, depth+1)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: keys must be scalars", k.Line)
			}
			val, err := nodeValue(v, depth+1)
			if err != nil {
				return nil, err
			}
			m[key] = val
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			val, err := nodeValue(c, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, val)
		}
		return l, nil
	case yaml.ScalarNode:
		return scalarValue(n)
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

func scalarValue(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, nil
		}
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return f, nil
		}
		return n.Value, nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return f, nil
	}
	if n.Style == 0 && yaml11Bool.MatchString(n.Value) {
		switch n.Value[0] {
		case 'y', 'Y', 't', 'T':
			return true, nil
		case 'o', 'O':
			return n.Value[1] == 'n' || n.Value[1] == 'N', nil
		}
		return false, nil
	}
	return n.Value, nil
}

// deepCopy copies a JSON-like tree.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

// sameValue compares JSON-like trees, numbers by value (30 == 30.0, as
// Python compares them).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, e := range x {
			f, ok := y[k]
			if !ok || !sameValue(e, f) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case int64, float64:
		fa, _ := asNumber(a)
		fb, ok := asNumber(b)
		return ok && fa == fb
	}
	return a == b
}

func asNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}
