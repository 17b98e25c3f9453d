package pgbackrest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk/section"
)

// Option is one pgbackrest command-line option.
type Option struct {
	// Name is the option's name as written, without the leading dashes
	// ("repo2-path", "no-link-all" for a boolean set to false).
	Name string
	// Value is the option's argument when HasValue.
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

// Options are the extra options of the section's options table, sorted by
// name, a list option's values in the order written.
type Options []Option

// Args renders every option.
func (os Options) Args() []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.Arg()
	}
	return out
}

// Get returns the value of the first option named name (a repository
// option by its indexed name, "repo1-host").
func (os Options) Get(name string) (string, bool) {
	for _, o := range os {
		if canonicalName(o.Name) == name && o.HasValue {
			return o.Value, true
		}
	}
	return "", false
}

// optionKind says what an option takes.
type optionKind int

const (
	// boolOption is a flag: true renders --name, false --no-name.
	boolOption optionKind = iota + 1
	// valueOption takes one value.
	valueOption
	// listOption takes a value and may be given several times.
	listOption
)

// optionSpec describes one allowed pgbackrest restore option.
type optionSpec struct {
	kind optionKind
	// check validates a value; nil accepts any non-empty one.
	check func(v string) error
}

// restoreOptions are the options of pgBackRest 2.45's restore command
// that the section may pass, apart from the repository options.
var restoreOptions = map[string]optionSpec{
	// restore
	"archive-mode":       {kind: valueOption, check: oneOf("preserve", "off")},
	"db-exclude":         {kind: listOption},
	"db-include":         {kind: listOption},
	"link-all":           {kind: boolOption},
	"link-map":           {kind: listOption, check: keyEqualsValue},
	"recovery-option":    {kind: listOption, check: keyEqualsValue},
	"set":                {kind: valueOption},
	"tablespace-map":     {kind: listOption, check: keyEqualsValue},
	"tablespace-map-all": {kind: valueOption},
	// general
	"buffer-size":             {kind: valueOption},
	"cmd":                     {kind: valueOption},
	"cmd-ssh":                 {kind: valueOption},
	"compress-level-network":  {kind: valueOption, check: wholeNumber},
	"config-include-path":     {kind: valueOption},
	"config-path":             {kind: valueOption},
	"io-timeout":              {kind: valueOption},
	"lock-path":               {kind: valueOption},
	"neutral-umask":           {kind: boolOption},
	"protocol-timeout":        {kind: valueOption},
	"sck-keep-alive":          {kind: boolOption},
	"tcp-keep-alive-count":    {kind: valueOption, check: wholeNumber},
	"tcp-keep-alive-idle":     {kind: valueOption, check: wholeNumber},
	"tcp-keep-alive-interval": {kind: valueOption, check: wholeNumber},
	// log
	"log-level-file": {kind: valueOption, check: oneOf("off", "error", "warn", "info", "detail", "debug", "trace")},
	"log-path":       {kind: valueOption},
	"log-subprocess": {kind: boolOption},
	"log-timestamp":  {kind: boolOption},
}

// repoOptions are pgBackRest 2.45's repository options for restore, by the
// name after "repo-" / "repo<N>-".
var repoOptions = map[string]optionSpec{
	"azure-account":             {kind: valueOption},
	"azure-container":           {kind: valueOption},
	"azure-endpoint":            {kind: valueOption},
	"azure-key-type":            {kind: valueOption, check: oneOf("shared", "sas")},
	"azure-uri-style":           {kind: valueOption, check: oneOf("host", "path")},
	"cipher-type":               {kind: valueOption, check: oneOf("none", "aes-256-cbc")},
	"gcs-bucket":                {kind: valueOption},
	"gcs-endpoint":              {kind: valueOption},
	"gcs-key-type":              {kind: valueOption, check: oneOf("auto", "service", "token")},
	"host":                      {kind: valueOption},
	"host-ca-file":              {kind: valueOption},
	"host-ca-path":              {kind: valueOption},
	"host-cert-file":            {kind: valueOption},
	"host-cmd":                  {kind: valueOption},
	"host-config":               {kind: valueOption},
	"host-config-include-path":  {kind: valueOption},
	"host-config-path":          {kind: valueOption},
	"host-key-file":             {kind: valueOption},
	"host-port":                 {kind: valueOption, check: port},
	"host-type":                 {kind: valueOption, check: oneOf("ssh", "tls")},
	"host-user":                 {kind: valueOption},
	"path":                      {kind: valueOption, check: absolutePath},
	"s3-bucket":                 {kind: valueOption},
	"s3-endpoint":               {kind: valueOption},
	"s3-key-type":               {kind: valueOption, check: oneOf("shared", "auto", "web-id")},
	"s3-kms-key-id":             {kind: valueOption},
	"s3-region":                 {kind: valueOption},
	"s3-role":                   {kind: valueOption},
	"s3-uri-style":              {kind: valueOption, check: oneOf("host", "path")},
	"storage-ca-file":           {kind: valueOption},
	"storage-ca-path":           {kind: valueOption},
	"storage-host":              {kind: valueOption},
	"storage-port":              {kind: valueOption, check: port},
	"storage-upload-chunk-size": {kind: valueOption},
	"storage-verify-tls":        {kind: boolOption},
	"type":                      {kind: valueOption, check: oneOf("azure", "cifs", "gcs", "posix", "s3")},
}

// Reasons an option is refused.
const (
	reasonTarget = "a replica is restored as a standby (--type=standby) following the cluster's latest timeline"
	reasonSecret = "a secret on pgBackRest's command line shows in the process list: put it in the pgBackRest configuration file, or in the environment (PGBACKREST_REPO1_CIPHER_PASS and the like)"
)

// forbiddenOptions are refused with the reason.
var forbiddenOptions = map[string]string{
	"stanza":            "set the stanza key",
	"config":            "set the config key",
	"process-max":       "set the process_max key",
	"repo":              "set the repo key",
	"type":              reasonTarget,
	"target":            reasonTarget,
	"target-action":     reasonTarget,
	"target-exclusive":  reasonTarget,
	"target-timeline":   reasonTarget,
	"delta":             "the plugin passes --delta itself when the host keeps the old data directory",
	"force":             "--force overwrites files the host did not hand over",
	"log-level-console": "the plugin sets it to read pgBackRest's progress",
	"log-level-stderr":  "the plugin sets it to read pgBackRest's progress",
	"help":              "it would only print the help",
	"version":           "it would only print the version",
}

// secretRepoOptions are pgBackRest's secure repository options, which it
// refuses on the command line itself.
var secretRepoOptions = map[string]bool{
	"azure-key": true, "cipher-pass": true, "gcs-key": true,
	"s3-key": true, "s3-key-secret": true, "s3-token": true,
}

// maxRepo is pgBackRest's highest repository index.
const maxRepo = 256

var (
	repoOptionName = regexp.MustCompile(`^repo([0-9]*)-(.+)$`)
	pgOptionName   = regexp.MustCompile(`^pg([0-9]*)-(.+)$`)
)

// canonicalName writes a repository option with its index
// ("repo-path" is "repo1-path"); other names are returned as they are.
func canonicalName(name string) string {
	if m := repoOptionName.FindStringSubmatch(name); m != nil {
		idx := m[1]
		if idx == "" {
			idx = "1"
		} else if n, err := strconv.Atoi(idx); err == nil {
			idx = strconv.Itoa(n)
		}
		return "repo" + idx + "-" + m[2]
	}
	return name
}

// lookupOption finds the spec of an option name, or says why it is
// refused.
func lookupOption(name string) (optionSpec, string) {
	if reason, ok := forbiddenOptions[name]; ok {
		return optionSpec{}, reason
	}
	if s, ok := restoreOptions[name]; ok {
		return s, ""
	}
	if m := repoOptionName.FindStringSubmatch(name); m != nil {
		if m[1] != "" {
			if n, err := strconv.Atoi(m[1]); err != nil || n < 1 || n > maxRepo {
				return optionSpec{}, fmt.Sprintf("repository index %s is not from 1 to %d", m[1], maxRepo)
			}
		}
		if secretRepoOptions[m[2]] {
			return optionSpec{}, reasonSecret
		}
		if s, ok := repoOptions[m[2]]; ok {
			return s, ""
		}
	}
	if m := pgOptionName.FindStringSubmatch(name); m != nil && m[2] == "path" {
		return optionSpec{}, "the data directory is the member's postgresql.data_dir"
	}
	return optionSpec{}, ""
}

// parseOptions decodes the options table (at path "options"), adding its
// problems to d. repoPathSet says the repo_path key sets the path of
// repository repo.
func parseOptions(d *section.Decoder, v any, repo int, repoPathSet bool) Options {
	table, ok := v.(map[string]any)
	if !ok {
		d.Add("options", "must be a table of pgBackRest option names and values, got %s", section.Describe(v))
		return nil
	}
	names := make([]string, 0, len(table))
	for k := range table {
		names = append(names, k)
	}
	// By option name, whether written with dashes or not.
	sort.Slice(names, func(i, j int) bool {
		a, b := strings.TrimPrefix(names[i], "--"), strings.TrimPrefix(names[j], "--")
		if a != b {
			return a < b
		}
		return names[i] < names[j]
	})
	var out Options
	seen := map[string]string{}
	for _, key := range names {
		path := "options." + key
		name := strings.TrimPrefix(key, "--")
		spec, reason := lookupOption(name)
		switch {
		case reason != "":
			d.Add(path, "option %q is not allowed: %s", name, reason)
			continue
		case spec.kind == 0:
			d.Add(path, "unknown pgBackRest restore option %q (known: %s)", name, strings.Join(knownOptionNames(), ", "))
			continue
		}
		canon := canonicalName(name)
		if repoPathSet && canon == fmt.Sprintf("repo%d-path", repo) {
			d.Add(path, "option %q is set by the repo_path key already", name)
			continue
		}
		if first, dup := seen[canon]; dup {
			d.Add(path, "option %q is the same option as %q", name, first)
			continue
		}
		seen[canon] = name
		out = append(out, optionValues(d, path, name, spec, table[key])...)
	}
	return out
}

// optionValues decodes the value of one option.
func optionValues(d *section.Decoder, path, name string, spec optionSpec, v any) Options {
	if spec.kind == boolOption {
		b, ok := boolValue(v)
		if !ok {
			d.Add(path, "option %q is a flag: must be true or false, got %s", name, section.Describe(v))
			return nil
		}
		if b {
			return Options{{Name: name}}
		}
		return Options{{Name: "no-" + name}}
	}
	items, isList := v.([]any)
	switch {
	case isList && spec.kind != listOption:
		d.Add(path, "option %q takes one value, got a list", name)
		return nil
	case isList && len(items) == 0:
		d.Add(path, "option %q needs a value, got an empty list", name)
		return nil
	case !isList:
		items = []any{v}
	}
	var out Options
	for i, item := range items {
		p := path
		if isList {
			p = fmt.Sprintf("%s[%d]", path, i)
		}
		var s string
		switch x := item.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		default:
			d.Add(p, "option %q needs a string or a number, got %s", name, section.Describe(item))
			continue
		}
		if strings.TrimSpace(s) == "" {
			d.Add(p, "option %q needs a value", name)
			continue
		}
		if spec.check != nil {
			if err := spec.check(s); err != nil {
				d.Add(p, "option %q: %v", name, err)
				continue
			}
		}
		out = append(out, Option{Name: name, Value: s, HasValue: true})
	}
	return out
}

// boolValue reads a flag: a boolean, or a string Patroni reads as one
// (what an environment variable carries).
func boolValue(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "yes", "on", "1", "y", "t":
			return true, true
		case "false", "no", "off", "0", "n", "f":
			return false, true
		}
	}
	return false, false
}

func knownOptionNames() []string {
	out := make([]string, 0, len(restoreOptions)+len(repoOptions))
	for k := range restoreOptions {
		out = append(out, k)
	}
	for k := range repoOptions {
		out = append(out, "repo<N>-"+k)
	}
	sort.Strings(out)
	return out
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

func keyEqualsValue(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	return nil
}

func wholeNumber(v string) error {
	if _, err := strconv.ParseUint(v, 10, 32); err != nil {
		return fmt.Errorf("%q is not a whole number", v)
	}
	return nil
}

func port(v string) error {
	_, err := section.ParsePort(v)
	return err
}

func absolutePath(v string) error {
	if !strings.HasPrefix(v, "/") {
		return fmt.Errorf("%q is not an absolute path", v)
	}
	return nil
}
