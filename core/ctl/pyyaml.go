package ctl

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// This file is the one YAML writer of custosctl's patronictl-shaped
// output. patronictl writes all of its YAML (show-config, edit-config and
// its diff, history and list -f yaml, the Tags cells of list) with PyYAML's
// safe_dump(allow_unicode=True, width=200), in block style except for the
// Tags cells of tsv and topology, which are in flow style.

// pyYAML writes a JSON-like value (maps with string keys, lists, strings,
// ints, float64, bools, nil) as PyYAML's safe_dump does in block style:
// keys sorted, lists not indented under their key, strings quoted only
// when YAML 1.1 would read them as something else. Long plain strings are
// not folded at PyYAML's width (patronictl's values are shorter).
func pyYAML(v any) string {
	var b strings.Builder
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return "{}\n"
		}
		writeMapping(&b, x, 0)
	case []any:
		if len(x) == 0 {
			return "[]\n"
		}
		writeSequence(&b, x, 0)
	default:
		b.WriteString(scalarYAML(v) + "\n...\n")
	}
	return b.String()
}

// writeMapping writes the keys at indent; the caller has placed the first
// one.
func writeMapping(b *strings.Builder, m map[string]any, indent int) {
	pad := strings.Repeat(" ", indent)
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(pad)
		}
		b.WriteString(stringYAML(k) + ":")
		writeValue(b, m[k], indent, true)
	}
}

// pyYAMLFlow writes a JSON-like value as PyYAML's safe_dump does with
// default_flow_style=True: {key: value, ...} and [item, ...] on one line,
// keys sorted, scalars quoted by the stricter rules of flow context. Lines
// are not wrapped at PyYAML's width (Tags cells are shorter).
func pyYAMLFlow(v any) string {
	switch v.(type) {
	case map[string]any, []any:
		var b strings.Builder
		writeFlow(&b, v)
		return b.String() + "\n"
	}
	return pyYAML(v)
}

func writeFlow(b *strings.Builder, v any) {
	switch x := v.(type) {
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(x)) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quotedYAML(k, true) + ": ")
			writeFlow(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeFlow(b, e)
		}
		b.WriteByte(']')
	case string:
		b.WriteString(quotedYAML(x, true))
	default:
		b.WriteString(scalarYAML(v))
	}
}

// writeSequence writes the items at indent; the caller has placed the
// first one.
func writeSequence(b *strings.Builder, l []any, indent int) {
	pad := strings.Repeat(" ", indent)
	for i, v := range l {
		if i > 0 {
			b.WriteString(pad)
		}
		b.WriteString("-")
		writeValue(b, v, indent, false)
	}
}

// writeValue writes what follows "key:" or "-": a scalar or empty
// collection on the same line, a mapping on the next lines (or, in a
// list, starting on the same line), a list on the next lines, indented
// under a list item but not under a key.
func writeValue(b *strings.Builder, v any, indent int, inMapping bool) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString(" {}\n")
			return
		}
		if inMapping {
			b.WriteString("\n" + strings.Repeat(" ", indent+2))
		} else {
			b.WriteString(" ")
		}
		writeMapping(b, x, indent+2)
	case []any:
		if len(x) == 0 {
			b.WriteString(" []\n")
			return
		}
		if inMapping {
			b.WriteString("\n" + strings.Repeat(" ", indent))
			writeSequence(b, x, indent)
			return
		}
		b.WriteString(" ")
		writeSequence(b, x, indent+2)
	default:
		b.WriteString(" " + scalarYAML(v) + "\n")
	}
}

// scalarYAML writes a scalar as PyYAML represents it.
func scalarYAML(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return floatYAML(x)
	case string:
		return stringYAML(x)
	}
	return stringYAML(fmt.Sprint(v))
}

// floatYAML is PyYAML's represent_float: Python's repr, lower-cased, with
// ".0" before an exponent that has no fraction.
func floatYAML(f float64) string {
	switch {
	case math.IsNaN(f):
		return ".nan"
	case math.IsInf(f, 1):
		return ".inf"
	case math.IsInf(f, -1):
		return "-.inf"
	}
	var s string
	if exp := math.Abs(f); exp != 0 && (exp < 1e-4 || exp >= 1e16) {
		s = strconv.FormatFloat(f, 'e', -1, 64)
		mant, e, _ := strings.Cut(s, "e")
		if !strings.Contains(mant, ".") {
			mant += ".0"
		}
		// Python writes at least two exponent digits: 1e+20, 1e-05.
		sign, digits := e[:1], strings.TrimLeft(e[1:], "0")
		if len(digits) < 2 {
			digits = strings.Repeat("0", 2-len(digits)) + digits
		}
		s = mant + "e" + sign + digits
	} else {
		s = strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
	}
	return s
}

// Plain scalars YAML 1.1 (PyYAML's resolver) would read as something other
// than a string; such strings are quoted.
var yaml11Implicit = []*regexp.Regexp{
	regexp.MustCompile(`^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$`),
	regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`),
	regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`),
	regexp.MustCompile(`^(?:<<)$`),
	regexp.MustCompile(`^(?:~|null|Null|NULL|)$`),
	regexp.MustCompile(`^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$`),
	regexp.MustCompile(`^(?:=)$`),
}

// stringYAML writes a string in block context.
func stringYAML(s string) string { return quotedYAML(s, false) }

// quotedYAML writes a string plain when PyYAML would (in flow context if
// flow), else single-quoted, or double-quoted with escapes when it holds
// characters a single-quoted scalar cannot show.
func quotedYAML(s string, flow bool) string {
	if plainAllowed(s, flow) {
		return s
	}
	for _, r := range s {
		if r == '\n' || r == '\t' || !unicode.IsPrint(r) {
			return doubleQuoted(s)
		}
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func plainAllowed(s string, flow bool) bool {
	if s == "" || s != strings.TrimSpace(s) {
		return false
	}
	// In flow context these end or separate a collection, and a colon
	// anywhere could start a value.
	if flow && (strings.ContainsAny(s, ",?[]{}") || strings.Contains(s, ":")) {
		return false
	}
	for _, re := range yaml11Implicit {
		if re.MatchString(s) {
			return false
		}
	}
	if strings.ContainsAny(s[:1], "#,[]{}&*!|>'\"%@`") {
		return false
	}
	if strings.ContainsAny(s[:1], "-?:") && (len(s) == 1 || s[1] == ' ') {
		return false
	}
	if strings.Contains(s, ": ") || strings.Contains(s, " #") || strings.HasSuffix(s, ":") {
		return false
	}
	for _, r := range s {
		if r == '\n' || r == '\t' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func doubleQuoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if !unicode.IsPrint(r) {
				if r <= 0xff {
					fmt.Fprintf(&b, `\x%02X`, r)
				} else {
					fmt.Fprintf(&b, `\u%04X`, r)
				}
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
