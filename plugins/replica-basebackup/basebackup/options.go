package basebackup

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/section"
)

// Option is one pg_basebackup long option.
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

// Options are the options of the [postgresql.basebackup] section, in the
// order written.
type Options []Option

// Args renders every option.
func (os Options) Args() []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.Arg()
	}
	return out
}

// Get returns the first option with the name.
func (os Options) Get(name string) (Option, bool) {
	for _, o := range os {
		if o.Name == name {
			return o, true
		}
	}
	return Option{}, false
}

// argKind says whether an option takes a value.
type argKind int

const (
	flagArg argKind = iota + 1
	valueArg
)

// spec describes one allowed pg_basebackup option.
type spec struct {
	kind argKind
	// repeat allows the option more than once.
	repeat bool
	// check validates a value; nil accepts any non-empty one.
	check func(v string) error
}

// knownOptions are pg_basebackup's long options (PostgreSQL 12 to 17) that
// make sense for a plain-format copy into the data directory.
var knownOptions = map[string]spec{
	"checkpoint":            {kind: valueArg, check: oneOf("fast", "spread")},
	"compress":              {kind: valueArg, check: checkCompress},
	"create-slot":           {kind: flagArg},
	"label":                 {kind: valueArg},
	"manifest-checksums":    {kind: valueArg, check: oneOfFold("NONE", "CRC32C", "SHA224", "SHA256", "SHA384", "SHA512")},
	"manifest-force-encode": {kind: flagArg},
	"max-rate":              {kind: valueArg, check: matches(`^[0-9]+[kM]?$`, "a rate in kB/s, with an optional k or M suffix (\"100M\")")},
	"no-clean":              {kind: flagArg},
	"no-estimate-size":      {kind: flagArg},
	"no-manifest":           {kind: flagArg},
	"no-password":           {kind: flagArg},
	"no-slot":               {kind: flagArg},
	"no-sync":               {kind: flagArg},
	"no-verify-checksums":   {kind: flagArg},
	"progress":              {kind: flagArg},
	"slot":                  {kind: valueArg},
	"status-interval":       {kind: valueArg, check: matches(`^[0-9]+$`, "a whole number of seconds")},
	"sync-method":           {kind: valueArg, check: oneOf("fsync", "syncfs")},
	"tablespace-mapping":    {kind: valueArg, repeat: true, check: matches(`^.+=.+$`, "OLDDIR=NEWDIR")},
	"verbose":               {kind: flagArg},
	"waldir":                {kind: valueArg},
	"write-recovery-conf":   {kind: flagArg},
}

// forbiddenOptions are refused with the reason. The first eleven are
// Patroni's list; the others would make pg_basebackup "succeed" without
// a usable data directory.
var forbiddenOptions = map[string]string{
	"pgdata":      "the data directory is the member's postgresql.data_dir",
	"format":      "a replica is always copied in plain format",
	"wal-method":  "WAL is always streamed (-X stream)",
	"xlog-method": "WAL is always streamed (-X stream)",
	"gzip":        "a plain-format copy cannot be compressed client-side",
	"version":     "it would only print the version",
	"dbname":      "the connection comes from the clone source",
	"host":        "the connection comes from the clone source",
	"port":        "the connection comes from the clone source",
	"username":    "the connection comes from the clone source",
	"password":    "passwords travel in the pgpass file, never on the command line",
	"help":        "it would only print the help",
	"target":      "the copy must land in the data directory",
	"incremental": "an incremental backup is not a usable data directory",
}

// alwaysPassed are added by the plugin anyway; users who list them (as
// Patroni's examples do with verbose) are not told off.
var alwaysPassed = map[string]bool{"progress": true, "verbose": true}

// ParseOptions decodes the JSON of the [postgresql.basebackup] section:
// Patroni's list of strings and single-key tables
// (["verbose", {"max-rate": "100M"}]) or a table
// ({"max-rate": "100M", "checkpoint": "fast"}; true stands for a flag,
// false drops it, a list repeats a repeatable option). Every problem comes
// back, with its key path, in one *sdk.ConfigError.
func ParseOptions(data []byte) (Options, error) {
	top, err := section.Parse(data)
	if err != nil || top == nil {
		return nil, err
	}
	errs := &sdk.ConfigError{}
	ps := &parser{errs: errs, seen: map[string]bool{}}
	switch x := top.(type) {
	case []any:
		for i, item := range x {
			path := fmt.Sprintf("[%d]", i)
			switch it := item.(type) {
			case string:
				name, value, hasValue := strings.Cut(strings.TrimPrefix(it, "--"), "=")
				ps.option(path, name, value, hasValue)
			case map[string]any:
				if len(it) != 1 {
					errs.Add(path, "an option table must have exactly one key, got %d", len(it))
					continue
				}
				for k, v := range it {
					ps.value(path, k, v)
				}
			default:
				errs.Add(path, "must be an option name or a single-key table, got %s", section.Describe(item))
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps.value(k, k, x[k])
		}
	default:
		errs.Add("", "must be a list of options or a table, got %s", section.Describe(top))
	}
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return ps.out, nil
}

// parser accumulates options and problems.
type parser struct {
	out  Options
	errs *sdk.ConfigError
	seen map[string]bool
}

// value decodes one name = value pair.
func (ps *parser) value(path, name string, v any) {
	name = strings.TrimPrefix(name, "--")
	switch x := v.(type) {
	case string:
		ps.option(path, name, unquote(x), true)
	case json.Number:
		ps.option(path, name, x.String(), true)
	case bool:
		if x {
			ps.option(path, name, "", false)
		}
	case []any:
		for i, item := range x {
			ps.value(fmt.Sprintf("%s[%d]", path, i), name, item)
		}
	default:
		ps.errs.Add(path, "must be a string, a number or a boolean, got %s", section.Describe(v))
	}
}

// option checks one option against pg_basebackup's and keeps it.
func (ps *parser) option(path, name, value string, hasValue bool) {
	if reason, ok := forbiddenOptions[name]; ok {
		ps.errs.Add(path, "option %q is not allowed: %s", name, reason)
		return
	}
	s, ok := knownOptions[name]
	if !ok {
		ps.errs.Add(path, "unknown pg_basebackup option %q (known: %s)", name, strings.Join(knownNames(), ", "))
		return
	}
	switch {
	case s.kind == flagArg && hasValue:
		ps.errs.Add(path, "option %q takes no value; list it alone or set it to true", name)
		return
	case s.kind == valueArg && (!hasValue || value == ""):
		ps.errs.Add(path, "option %q needs a value", name)
		return
	case s.check != nil:
		if err := s.check(value); err != nil {
			ps.errs.Add(path, "option %q: %v", name, err)
			return
		}
	}
	if alwaysPassed[name] {
		return
	}
	if ps.seen[name] && !s.repeat {
		ps.errs.Add(path, "option %q given again; pg_basebackup takes it once", name)
		return
	}
	ps.seen[name] = true
	ps.out = append(ps.out, Option{Name: name, Value: value, HasValue: hasValue})
}

func knownNames() []string {
	out := make([]string, 0, len(knownOptions))
	for k := range knownOptions {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// unquote drops one pair of matching quotes around a value, as Patroni
// does, so that "'a b'" reaches the tool as a b.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func oneOfFold(allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func matches(pattern, want string) func(string) error {
	re := regexp.MustCompile(pattern)
	return func(v string) error {
		if !re.MatchString(v) {
			return fmt.Errorf("%q is not %s", v, want)
		}
		return nil
	}
}

// checkCompress allows server-side compression only: a plain-format copy
// is decompressed by pg_basebackup as it arrives, which PostgreSQL 15 and
// later can do for server-compressed streams; client-side compression
// would leave compressed files instead of a data directory.
func checkCompress(v string) error {
	if !strings.HasPrefix(v, "server-") {
		return fmt.Errorf("%q: only server-side compression (server-gzip, server-lz4, server-zstd, optionally with :level) works for a replica, on PostgreSQL 15 or later", v)
	}
	return nil
}
