package pgbackrest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/custos-ha/custos/plugin/sdk/section"
)

// DefaultCommand is the pgbackrest executable when the section names none:
// found on the plugin's PATH.
const DefaultCommand = "pgbackrest"

// maxProcessMax is the highest process-max pgBackRest accepts.
const maxProcessMax = 999

// DefaultConfigFile is where pgBackRest reads its configuration when
// neither the config key nor the options say otherwise; errors name it.
const DefaultConfigFile = "/etc/pgbackrest/pgbackrest.conf"

// Config is the [postgresql.pgbackrest] section:
//
//	stanza      = "main"                             # required
//	command     = "/usr/bin/pgbackrest"              # the executable; default pgbackrest on PATH
//	config      = "/etc/pgbackrest/pgbackrest.conf"  # --config
//	repo        = 2                                  # --repo: restore from this repository only
//	repo_path   = "/var/lib/pgbackrest"              # --repo<repo or 1>-path
//	process_max = 4                                  # --process-max
//	[postgresql.pgbackrest.options]                  # any other restore option, by pgBackRest's name
//	repo1-host = "backup1"
//	link-all = true                                  # a flag: --link-all (false: --no-link-all)
//	recovery-option = ["recovery_min_apply_delay=5min"]
//
// Secrets (repo1-cipher-pass, repo1-s3-key-secret, ...) never go in the
// section: they belong in the pgBackRest configuration file or in the
// environment (PGBACKREST_REPO1_CIPHER_PASS, ...).
type Config struct {
	// Stanza is the pgBackRest stanza of the cluster.
	Stanza string
	// Command is the pgbackrest executable.
	Command string
	// ConfigFile is pgBackRest's configuration file; empty means its
	// default.
	ConfigFile string
	// Repo is the repository to restore from; 0 lets pgBackRest pick the
	// first one holding a backup.
	Repo int
	// RepoPath is the path of repository Repo (or 1); empty means the
	// configuration file's.
	RepoPath string
	// ProcessMax is pgBackRest's process-max; 0 means its default.
	ProcessMax int
	// Options are the other restore options.
	Options Options
}

// ParseConfig decodes the JSON of the section. Every problem comes back,
// with its key path, in one *sdk.ConfigError.
func ParseConfig(data []byte) (Config, error) {
	d, err := section.New(data)
	if err != nil {
		return Config{}, err
	}
	c := Config{Command: DefaultCommand}
	d.String("stanza", &c.Stanza)
	d.String("command", &c.Command)
	d.String("config", &c.ConfigFile)
	d.String("repo_path", &c.RepoPath)
	intKey(d, "repo", 1, maxRepo, &c.Repo)
	intKey(d, "process_max", 1, maxProcessMax, &c.ProcessMax)

	switch {
	case d.Failed("stanza"):
	case !d.Has("stanza") || strings.TrimSpace(c.Stanza) == "":
		d.Add("stanza", "required: the pgBackRest stanza to restore from")
	case strings.HasPrefix(c.Stanza, "-") || strings.IndexFunc(c.Stanza, notPlain) >= 0:
		d.Add("stanza", "%q is not a stanza name (no spaces, control characters or leading dash)", c.Stanza)
	}
	switch {
	case d.Failed("command"):
	case strings.TrimSpace(c.Command) == "":
		d.Add("command", "must name the pgbackrest executable")
	case strings.IndexFunc(c.Command, unicode.IsSpace) >= 0:
		d.Add("command", "%q: only the executable goes here; options belong in the other keys", c.Command)
	}
	for _, key := range []string{"config", "repo_path"} {
		v := map[string]string{"config": c.ConfigFile, "repo_path": c.RepoPath}[key]
		if d.Has(key) && !d.Failed(key) && !strings.HasPrefix(v, "/") {
			d.Add(key, "%q is not an absolute path", v)
		}
	}
	if v, ok := d.Value("options"); ok {
		c.Options = parseOptions(d, v, c.repoIndex(), c.RepoPath != "")
	}
	if err := d.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// notPlain is true for runes a stanza name cannot hold.
func notPlain(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '=' }

// intKey decodes a whole number from lo to hi, a number or a string of
// digits (what an environment variable carries).
func intKey(d *section.Decoder, key string, lo, hi int, dst *int) {
	v, ok := d.Value(key)
	if !ok {
		return
	}
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		d.Add(key, "must be a whole number from %d to %d, got %s", lo, hi, section.Describe(v))
		return
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		d.Add(key, "must be a whole number from %d to %d, got %q", lo, hi, s)
		return
	}
	*dst = n
}

// repoIndex is the repository repo_path and the messages are about.
func (c Config) repoIndex() int {
	if c.Repo > 0 {
		return c.Repo
	}
	return 1
}

// RepoDescription names the repository a restore reads, for messages:
// its path, host or bucket when the section says, else the configuration
// file that does.
func (c Config) RepoDescription() string {
	idx := c.repoIndex()
	name := fmt.Sprintf("repo%d", idx)
	opt := func(o string) string {
		v, _ := c.Options.Get(fmt.Sprintf("repo%d-%s", idx, o))
		return v
	}
	var where string
	switch {
	case opt("host") != "":
		where = "on host " + opt("host")
		if p := c.RepoPath; p != "" {
			where += ", path " + p
		} else if p := opt("path"); p != "" {
			where += ", path " + p
		}
	case opt("s3-bucket") != "":
		where = "in S3 bucket " + opt("s3-bucket")
	case opt("gcs-bucket") != "":
		where = "in GCS bucket " + opt("gcs-bucket")
	case opt("azure-container") != "":
		where = "in Azure container " + opt("azure-container")
	case c.RepoPath != "":
		where = "at " + c.RepoPath
	case opt("path") != "":
		where = "at " + opt("path")
	default:
		cfg := c.ConfigFile
		if cfg == "" {
			cfg = DefaultConfigFile
		}
		if c.Repo == 0 {
			// pgBackRest tries each configured repository in turn.
			return "the repositories as configured in " + cfg
		}
		where = "as configured in " + cfg
	}
	return fmt.Sprintf("repository %s %s", name, where)
}
