package pgbackrest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{
		"stanza": "main", "command": "/usr/bin/pgbackrest", "config": "/etc/pgbackrest/custos.conf",
		"repo": 2, "repo_path": "/backup/repo2", "process_max": "4",
		"options": {
			"repo1-host": "backup1", "--repo1-host-user": "postgres", "repo3-s3-bucket": "b",
			"link-all": true, "neutral-umask": "no", "recovery-option": ["recovery_min_apply_delay=5min", "a=b"],
			"io-timeout": 30, "archive-mode": "off", "db-include": "app"
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Stanza != "main" || c.Command != "/usr/bin/pgbackrest" || c.ConfigFile != "/etc/pgbackrest/custos.conf" ||
		c.Repo != 2 || c.RepoPath != "/backup/repo2" || c.ProcessMax != 4 {
		t.Errorf("config = %+v", c)
	}
	want := []string{"--archive-mode=off", "--db-include=app", "--io-timeout=30", "--link-all", "--no-neutral-umask",
		"--recovery-option=recovery_min_apply_delay=5min", "--recovery-option=a=b",
		"--repo1-host=backup1", "--repo1-host-user=postgres", "--repo3-s3-bucket=b"}
	if got := c.Options.Args(); !slices.Equal(got, want) {
		t.Errorf("options =\n%q\nwant\n%q", got, want)
	}
	if got := c.RepoDescription(); got != "repository repo2 at /backup/repo2" {
		t.Errorf("repository = %q", got)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{"stanza": "main"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Command != DefaultCommand || c.ConfigFile != "" || c.Repo != 0 || c.RepoPath != "" || c.ProcessMax != 0 || len(c.Options) != 0 {
		t.Errorf("defaults = %+v", c)
	}
}

func TestRepoDescription(t *testing.T) {
	opt := func(n, v string) Option { return Option{Name: n, Value: v, HasValue: true} }
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "the repositories as configured in /etc/pgbackrest/pgbackrest.conf"},
		{Config{ConfigFile: "/c.conf"}, "the repositories as configured in /c.conf"},
		{Config{Repo: 3, ConfigFile: "/c.conf"}, "repository repo3 as configured in /c.conf"},
		{Config{RepoPath: "/r"}, "repository repo1 at /r"},
		{Config{Options: Options{opt("repo-path", "/r")}}, "repository repo1 at /r"},
		{Config{Options: Options{opt("repo1-host", "b1"), opt("repo1-path", "/r")}}, "repository repo1 on host b1, path /r"},
		{Config{Repo: 2, Options: Options{opt("repo1-host", "b1"), opt("repo2-gcs-bucket", "g")}}, "repository repo2 in GCS bucket g"},
		{Config{Options: Options{opt("repo1-azure-container", "c")}}, "repository repo1 in Azure container c"},
	} {
		if got := tc.cfg.RepoDescription(); got != tc.want {
			t.Errorf("RepoDescription(%+v) = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}

func TestParseConfigProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		// want maps a key path to a fragment of its message.
		want map[string]string
	}{
		{"not json", `{`, map[string]string{"": "not valid JSON"}},
		{"not a table", `["stanza"]`, map[string]string{"": "must be a table"}},
		{"empty", ``, map[string]string{"stanza": "required"}},
		{"unknown key", `{"stanza": "m", "custos_conformance_unknown_key": 1}`, map[string]string{"custos_conformance_unknown_key": "unknown key"}},
		{"bad types", `{"stanza": 1, "command": true, "config": 2, "repo_path": [], "repo": "two", "process_max": 0, "options": []}`, map[string]string{
			"stanza": "must be a string", "command": "must be a string", "config": "must be a string", "repo_path": "must be a string",
			"repo": "from 1 to 256", "process_max": "from 1 to 999", "options": "must be a table"}},
		{"bad values", `{"stanza": "-x", "command": "pgbackrest --stanza=x", "config": "pgbackrest.conf", "repo_path": "repo", "repo": 257, "process_max": 1000}`, map[string]string{
			"stanza": "not a stanza name", "command": "only the executable", "config": "not an absolute path", "repo_path": "not an absolute path",
			"repo": "from 1 to 256", "process_max": "from 1 to 999"}},
		{"stanza with a space", `{"stanza": "a b"}`, map[string]string{"stanza": "not a stanza name"}},
		{"forbidden options", `{"stanza": "m", "options": {"stanza": "x", "pg1-path": "/d", "pg-path": "/d", "type": "time", "target": "x",
			"target-action": "promote", "delta": true, "force": true, "config": "/c", "process-max": 2, "repo": 1, "log-level-console": "info"}}`, map[string]string{
			"options.stanza": "stanza key", "options.pg1-path": "postgresql.data_dir", "options.pg-path": "postgresql.data_dir",
			"options.type": "standby", "options.target": "standby", "options.target-action": "standby", "options.delta": "--delta itself",
			"options.force": "not allowed", "options.config": "config key", "options.process-max": "process_max key", "options.repo": "repo key",
			"options.log-level-console": "progress"}},
		{"secrets", `{"stanza": "m", "options": {"repo1-cipher-pass": "x", "repo-s3-key": "k", "repo2-s3-key-secret": "s", "repo1-s3-token": "t", "repo1-azure-key": "a", "repo1-gcs-key": "/k"}}`, map[string]string{
			"options.repo1-cipher-pass": "process list", "options.repo-s3-key": "process list", "options.repo2-s3-key-secret": "process list",
			"options.repo1-s3-token": "process list", "options.repo1-azure-key": "process list", "options.repo1-gcs-key": "process list"}},
		{"unknown options", `{"stanza": "m", "options": {"bogus": 1, "repo1-bogus": "x", "pg1-host": "h", "repo0-path": "/r", "repo300-path": "/r"}}`, map[string]string{
			"options.bogus": "unknown pgBackRest restore option", "options.repo1-bogus": "unknown pgBackRest restore option",
			"options.pg1-host": "unknown pgBackRest restore option", "options.repo0-path": "not from 1 to 256", "options.repo300-path": "not from 1 to 256"}},
		{"option values", `{"stanza": "m", "options": {"link-all": "maybe", "io-timeout": true, "set": ["a", "b"], "recovery-option": ["a=b", true, "c"],
			"log-path": "", "db-include": [], "archive-mode": "on", "repo1-path": "relative", "repo1-host-port": 70000, "link-map": {"a": "b"}}}`, map[string]string{
			"options.link-all": "is a flag", "options.io-timeout": "needs a string or a number", "options.set": "takes one value",
			"options.recovery-option[1]": "needs a string or a number", "options.recovery-option[2]": "not key=value", "options.log-path": "needs a value", "options.db-include": "empty list",
			"options.archive-mode": "not one of preserve, off", "options.repo1-path": "not an absolute path",
			"options.repo1-host-port": "from 1 to 65535", "options.link-map": "needs a string or a number"}},
		{"option given twice", `{"stanza": "m", "options": {"repo-path": "/a", "repo1-path": "/b", "--link-all": true, "link-all": false}}`, map[string]string{
			"options.repo1-path": `same option as "repo-path"`, "options.link-all": `same option as "link-all"`}},
		{"repo path twice", `{"stanza": "m", "repo": 2, "repo_path": "/r", "options": {"repo2-path": "/s", "repo1-path": "/t"}}`, map[string]string{
			"options.repo2-path": "repo_path key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
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

func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{`{"stanza": "main"}`, `{"stanza": "m", "options": {"repo1-path": "/r", "link-all": true}}`,
		`null`, `[1]`, `{"stanza": "m", "options": {"recovery-option": ["a=b"]}}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		c, err := ParseConfig([]byte(data))
		if err != nil {
			var cfgErr *sdk.ConfigError
			if !errors.As(err, &cfgErr) || len(cfgErr.Problems) == 0 {
				t.Fatalf("error %T %v is not a config error with problems", err, err)
			}
			return
		}
		if c.Stanza == "" {
			t.Fatal("a config without a stanza passed")
		}
		for _, o := range c.Options {
			name := strings.TrimPrefix(o.Name, "no-")
			if spec, reason := lookupOption(name); reason != "" || spec.kind == 0 {
				if spec, reason = lookupOption(o.Name); reason != "" || spec.kind == 0 {
					t.Fatalf("option %q passed (%s)", o.Name, reason)
				}
			}
		}
		if _, err := (Restore{Config: c, DataDir: "/d", Standby: true}).Args(); err != nil {
			t.Fatalf("a valid section gives no command: %v", err)
		}
	})
}
