package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// decoder maps a value tree onto Go values, collecting every problem
// instead of stopping at the first one. Keys are matched by the field's json
// tag name (Patroni's names); a `config` tag adds options:
//
//	config:"extra"        map field receiving the keys no other field takes
//	config:"alias=NAME"   NAME is an older spelling of the key
//	config:"-"            the key is handled outside the generic decoder
type decoder struct {
	file  string
	lines map[string]int    // rendered key path -> file line
	env   map[string]string // rendered key path -> environment variable
	probs Problems
}

// treeDecoder is implemented by types that decode themselves from a tree
// value (durations, sizes, secrets, option lists...).
type treeDecoder interface {
	decodeTree(d *decoder, p path, v any)
}

// rawKeeper is implemented by structs that keep their raw table so that
// marshalling can preserve keys custos does not know.
type rawKeeper interface {
	keepRaw(raw map[string]any)
}

// add records a problem at p with its source.
func (d *decoder) add(p path, format string, args ...any) {
	d.addAt(p.String(), format, args...)
}

func (d *decoder) addAt(key, format string, args ...any) {
	pr := Problem{Path: key, Message: fmt.Sprintf(format, args...)}
	if v := d.envOf(key); v != "" {
		pr.Env = v
	} else {
		pr.File = d.file
		pr.Line = d.lineOf(key)
	}
	d.probs = append(d.probs, pr)
}

// lineOf returns the line of key, or of its nearest ancestor that has one.
func (d *decoder) lineOf(key string) int {
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := d.lines[k]; ok {
			return l
		}
	}
	return 0
}

// envOf returns the variable that set key or one of its ancestors.
func (d *decoder) envOf(key string) string {
	for k := key; k != ""; k = parentKey(k) {
		if v, ok := d.env[k]; ok {
			return v
		}
	}
	return ""
}

// present reports whether key was set in the file or the environment.
func (d *decoder) present(key string) bool {
	_, inFile := d.lines[key]
	_, inEnv := d.env[key]
	return inFile || inEnv
}

// parentKey drops the last element of a rendered path. It cuts at the last
// '.' or '['; a quoted key containing those is cut oddly, which only makes
// the lookup climb further.
func parentKey(k string) string {
	i := strings.LastIndexAny(k, ".[")
	if i < 0 {
		return ""
	}
	return k[:i]
}

func (d *decoder) wrongType(p path, want string, v any) {
	d.add(p, "wrong type: expected %s, got %s", want, typeName(v))
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[Secret]()
)

// decode stores tree value v into rv, which must be settable.
func (d *decoder) decode(p path, v any, rv reflect.Value) {
	if ev, ok := v.(envValue); ok {
		v = resolveEnv(ev.raw, rv.Type())
	}
	if rv.CanAddr() {
		if td, ok := rv.Addr().Interface().(treeDecoder); ok {
			td.decodeTree(d, p, v)
			return
		}
	}
	if rv.Type() == durationType {
		if dur, err := parseDuration(v); err != nil {
			d.add(p, "%v", err)
		} else {
			rv.SetInt(int64(dur))
		}
		return
	}
	switch rv.Kind() {
	case reflect.String:
		if s, ok := v.(string); ok {
			rv.SetString(s)
		} else {
			d.wrongType(p, "a string", v)
		}
	case reflect.Bool:
		if b, ok := asBool(v); ok {
			rv.SetBool(b)
		} else {
			d.wrongType(p, "a boolean", v)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := asInt(v)
		switch {
		case !ok:
			d.wrongType(p, "an integer", v)
		case rv.OverflowInt(n):
			d.add(p, "out of range: %d is too large", n)
		default:
			rv.SetInt(n)
		}
	case reflect.Float32, reflect.Float64:
		if f, ok := asFloat(v); ok {
			rv.SetFloat(f)
		} else {
			d.wrongType(p, "a number", v)
		}
	case reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			d.wrongType(p, "an array", v)
			return
		}
		s := reflect.MakeSlice(rv.Type(), len(items), len(items))
		for i, item := range items {
			d.decode(p.index(i), item, s.Index(i))
		}
		rv.Set(s)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			d.wrongType(p, "a table", v)
			return
		}
		out := reflect.MakeMapWithSize(rv.Type(), len(m))
		for _, k := range sortedKeys(m) {
			ev := reflect.New(rv.Type().Elem()).Elem()
			d.decode(p.key(k), m[k], ev)
			out.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), ev)
		}
		rv.Set(out)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.wrongType(p, "a table", v)
			return
		}
		d.decodeStruct(p, m, rv)
	case reflect.Pointer:
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		d.decode(p, v, rv.Elem())
	case reflect.Interface:
		if v != nil {
			rv.Set(reflect.ValueOf(resolveEnvTree(v)))
		}
	default:
		d.add(p, "cannot decode into %s", rv.Type())
	}
}

func (d *decoder) decodeStruct(p path, m map[string]any, rv reflect.Value) {
	info := fieldsOf(rv.Type())
	var extra reflect.Value
	for _, k := range sortedKeys(m) {
		f, ok := info.byName[k]
		if ok && f.skip {
			continue
		}
		if ok && f.alias {
			if _, canonical := m[f.name]; canonical {
				continue // the current name wins over the old one
			}
		}
		if ok {
			d.decode(p.key(k), m[k], rv.Field(f.index))
			continue
		}
		if info.extra < 0 {
			if _, keeps := rv.Addr().Interface().(rawKeeper); !keeps {
				d.add(p.key(k), "unknown key")
			}
			// else: kept in the raw table, as Patroni keeps keys it
			// does not know in the dynamic configuration.
			continue
		}
		ft := rv.Type().Field(info.extra).Type
		ek := ft.Elem().Kind()
		if _, isTable := m[k].(map[string]any); !isTable && (ek == reflect.Struct || ek == reflect.Map) {
			// Extra keys of this struct are sections; a scalar here is a typo.
			d.add(p.key(k), "unknown key")
			continue
		}
		if !extra.IsValid() {
			extra = rv.Field(info.extra)
			if extra.IsNil() {
				extra.Set(reflect.MakeMap(ft))
			}
		}
		ev := reflect.New(ft.Elem()).Elem()
		d.decode(p.key(k), m[k], ev)
		extra.SetMapIndex(reflect.ValueOf(k), ev)
	}
	if rv.CanAddr() {
		if rk, ok := rv.Addr().Interface().(rawKeeper); ok {
			rk.keepRaw(m)
		}
	}
}

type fieldInfo struct {
	index int
	name  string // canonical key name
	alias bool   // this entry is an alias of name
	skip  bool
}

type structInfo struct {
	byName map[string]fieldInfo
	extra  int // index of the config:"extra" field, or -1
	fields []fieldInfo
}

var structCache sync.Map // reflect.Type -> *structInfo

// fieldsOf reads the json and config tags of a struct type.
func fieldsOf(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{byName: map[string]fieldInfo{}, extra: -1}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		opts := f.Tag.Get("config")
		if opts == "extra" {
			si.extra = i
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fi := fieldInfo{index: i, name: name, skip: opts == "-"}
		si.byName[name] = fi
		si.fields = append(si.fields, fi)
		if alias, ok := strings.CutPrefix(opts, "alias="); ok {
			si.byName[alias] = fieldInfo{index: i, name: name, alias: true}
		}
	}
	actual, _ := structCache.LoadOrStore(t, si)
	return actual.(*structInfo)
}

// aliasOf returns the alias declared for a field, if any.
func aliasOf(t reflect.Type, index int) string {
	alias, _ := strings.CutPrefix(t.Field(index).Tag.Get("config"), "alias=")
	return alias
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// asBool accepts a boolean or, as Patroni does, one of its usual spellings.
func asBool(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		switch strings.ToLower(x) {
		case "true", "on", "yes", "1":
			return true, true
		case "false", "off", "no", "0":
			return false, true
		}
	}
	return false, false
}

// asInt accepts an integer, an integral float, or a string holding one
// (Patroni accepts numeric strings for integer settings).
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

// resolveEnv interprets an environment override for a key of type t: a
// string key takes the text as is; otherwise the text is read as a TOML
// value (so lists, tables, numbers and booleans work), an array key also
// accepts a comma-separated list, and anything else stays a string for the
// key's own decoder to judge.
func resolveEnv(raw string, t reflect.Type) any {
	if t.Kind() == reflect.String || t == secretType {
		return raw
	}
	isList := t.Kind() == reflect.Slice
	if v, ok := parseTOMLValue(raw); ok {
		if _, gotList := v.([]any); isList && !gotList {
			return splitList(raw)
		}
		return v
	}
	if isList {
		return splitList(raw)
	}
	return raw
}

// resolveEnvTree interprets environment overrides found inside an untyped
// value (a raw table).
func resolveEnvTree(v any) any {
	switch x := v.(type) {
	case envValue:
		if tv, ok := parseTOMLValue(x.raw); ok {
			return tv
		}
		return x.raw
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = resolveEnvTree(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = resolveEnvTree(e)
		}
		return out
	}
	return v
}

func splitList(s string) []any {
	var out []any
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	if out == nil {
		out = []any{}
	}
	return out
}
