package basebackup

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
)

func TestParseOptionsForms(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want []string
	}{
		{"empty", ``, nil},
		{"null", `null`, nil},
		{"empty list", `[]`, nil},
		{"empty table", `{}`, nil},
		{"patroni list", `["verbose", {"max-rate": "100M"}, "no-sync", {"checkpoint": "fast"}]`,
			[]string{"--max-rate=100M", "--no-sync", "--checkpoint=fast"}},
		{"list with dashes and inline value", `["--no-slot", "label=clone one"]`, []string{"--no-slot", "--label=clone one"}},
		{"table sorted by key", `{"max-rate": "100M", "checkpoint": "fast", "verbose": true}`,
			[]string{"--checkpoint=fast", "--max-rate=100M"}},
		{"table flags", `{"no-sync": true, "write-recovery-conf": false}`, []string{"--no-sync"}},
		{"numbers", `{"status-interval": 10, "max-rate": 1024}`, []string{"--max-rate=1024", "--status-interval=10"}},
		{"quoted value unquoted as patroni does", `[{"label": "\"a b\""}]`, []string{"--label=a b"}},
		{"repeated tablespace mapping", `{"tablespace-mapping": ["/a=/b", "/c=/d"]}`,
			[]string{"--tablespace-mapping=/a=/b", "--tablespace-mapping=/c=/d"}},
		{"server compression", `{"compress": "server-zstd:level=3"}`, []string{"--compress=server-zstd:level=3"}},
		{"progress and verbose are always passed", `["progress", "verbose", "verbose"]`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := ParseOptions([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if got := opts.Args(); !slices.Equal(got, tc.want) {
				t.Errorf("args = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseOptionsProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		// want maps a key path to a fragment of its message.
		want map[string]string
	}{
		{"not json", `{`, map[string]string{"": "not valid JSON"}},
		{"scalar", `"verbose"`, map[string]string{"": "must be a list of options or a table"}},
		{"forbidden in list", `["pgdata", {"format": "t"}, {"wal-method": "fetch"}]`, map[string]string{
			"[0]": `"pgdata" is not allowed`, "[1]": `"format" is not allowed`, "[2]": `"wal-method" is not allowed`}},
		{"every forbidden option in a table", `{"pgdata": "x", "format": "p", "wal-method": "s", "xlog-method": "s", "gzip": true,
			"version": true, "dbname": "d", "host": "h", "port": "1", "username": "u", "password": "p"}`, map[string]string{
			"pgdata": "not allowed", "format": "not allowed", "wal-method": "not allowed", "xlog-method": "not allowed",
			"gzip": "not allowed", "version": "not allowed", "dbname": "not allowed", "host": "not allowed",
			"port": "not allowed", "username": "not allowed", "password": "not allowed"}},
		{"unknown", `{"custos_no_such": "x", "max": "1M"}`, map[string]string{
			"custos_no_such": "unknown pg_basebackup option", "max": "unknown pg_basebackup option"}},
		{"client compression", `{"compress": "gzip"}`, map[string]string{"compress": "only server-side compression"}},
		{"client compression level", `["verbose", {"compress": "9"}]`, map[string]string{"[1]": "only server-side"}},
		{"flag with value", `["verbose=yes", {"no-sync": "yes"}]`, map[string]string{"[0]": "takes no value", "[1]": "takes no value"}},
		{"value missing", `["max-rate", {"label": ""}]`, map[string]string{"[0]": "needs a value", "[1]": "needs a value"}},
		{"bad values", `{"checkpoint": "slow", "max-rate": "fast", "status-interval": "1m", "sync-method": "x", "tablespace-mapping": "/a"}`,
			map[string]string{"checkpoint": `"slow" is not one of fast, spread`, "max-rate": "is not a rate",
				"status-interval": "whole number", "sync-method": "not one of", "tablespace-mapping": "OLDDIR=NEWDIR"}},
		{"multi-key table in list", `[{"max-rate": "1M", "checkpoint": "fast"}]`, map[string]string{"[0]": "exactly one key"}},
		{"wrong item type", `[1, ["x"]]`, map[string]string{"[0]": "got a number", "[1]": "got a list"}},
		{"wrong value type", `{"label": {"a": 1}, "tablespace-mapping": ["/a=/b", null]}`,
			map[string]string{"label": "got a table", "tablespace-mapping[1]": "got null"}},
		{"given twice", `[{"max-rate": "1M"}, {"max-rate": "2M"}]`, map[string]string{"[1]": "given again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOptions([]byte(tc.json))
			var cfgErr *sdk.ConfigError
			if !errors.As(err, &cfgErr) {
				t.Fatalf("want *sdk.ConfigError, got %T %v", err, err)
			}
			got := map[string]string{}
			for _, p := range cfgErr.Problems {
				got[p.Path] += p.Message
			}
			for path, frag := range tc.want {
				if !strings.Contains(got[path], frag) {
					t.Errorf("problem at %q = %q, want it to mention %q", path, got[path], frag)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("problems at %d paths, want %d: %v", len(got), len(tc.want), cfgErr)
			}
		})
	}
}

func FuzzParseOptions(f *testing.F) {
	for _, seed := range []string{`["verbose", {"max-rate": "100M"}]`, `{"checkpoint": "fast"}`, `null`, `[1]`, `{"a": [true]}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		opts, err := ParseOptions([]byte(data))
		if err != nil {
			var cfgErr *sdk.ConfigError
			if !errors.As(err, &cfgErr) || len(cfgErr.Problems) == 0 {
				t.Fatalf("error %T %v is not a config error with problems", err, err)
			}
			return
		}
		for _, o := range opts {
			if _, bad := forbiddenOptions[o.Name]; bad {
				t.Fatalf("forbidden option %q passed", o.Name)
			}
			if _, ok := knownOptions[o.Name]; !ok {
				t.Fatalf("unknown option %q passed", o.Name)
			}
		}
	})
}
