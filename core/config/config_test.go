package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	goldenfile "github.com/custos-ha/custos/testkit/golden"
)

// minimal is the smallest useful configuration (the one the docs show).
const minimal = `scope = "demo"
name = "node1"

[restapi]
listen = "127.0.0.1:8008"
connect_address = "127.0.0.1:8008"

[dcs.etcd3]
hosts = ["127.0.0.1:2379"]

[bootstrap.dcs]
ttl = 30
loop_wait = 10
retry_timeout = 10
maximum_lag_on_failover = 1048576

[bootstrap.dcs.postgresql]
use_pg_rewind = true

[postgresql]
listen = "127.0.0.1:5432"
connect_address = "127.0.0.1:5432"
data_dir = "/var/lib/custos/node1"
bin_dir = "/usr/lib/postgresql/15/bin"

[postgresql.authentication.superuser]
username = "postgres"
password = "secret"

[postgresql.authentication.replication]
username = "replicator"
password = "rep-secret"

[postgresql.parameters]
wal_keep_size = "128MB"
`

func mustParse(t *testing.T, src string, env map[string]string) *Config {
	t.Helper()
	c, err := Parse("custos.toml", []byte(src), mapEnv(env))
	if err != nil {
		t.Fatalf("unexpected problems:\n%v", err)
	}
	return c
}

func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// problemsOf parses src and returns its problems (failing if it loads).
func problemsOf(t *testing.T, src string, env map[string]string) Problems {
	t.Helper()
	c, err := Parse("custos.toml", []byte(src), mapEnv(env))
	if err == nil {
		t.Fatalf("expected problems, config loaded: %+v", c)
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, want Problems: %v", err, err)
	}
	if c != nil {
		t.Errorf("a config was returned along with problems")
	}
	return ps
}

// lineWith returns the 1-based line of src containing marker.
func lineWith(t *testing.T, src, marker string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not in source", marker)
	return 0
}

func TestMinimalConfigLoads(t *testing.T) {
	c := mustParse(t, minimal, nil)
	if got := c.DCSName(); got != "etcd3" {
		t.Errorf("DCSName() = %q, want etcd3", got)
	}
	js, err := c.DCSConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != `{"hosts":["127.0.0.1:2379"]}` {
		t.Errorf("DCSConfigJSON() = %s", js)
	}
	if got := c.PostgreSQL.Authentication.Superuser.Password.Value(); got != "secret" {
		t.Errorf("superuser password = %q, want secret", got)
	}
	if got := c.PostgreSQL.Parameters["wal_keep_size"].String(); got != "128MB" {
		t.Errorf("wal_keep_size = %q", got)
	}
	if !c.Dynamic().PostgreSQL.UsePgRewind {
		t.Errorf("bootstrap.dcs.postgresql.use_pg_rewind not read")
	}
}

func TestDefaultsApplied(t *testing.T) {
	c := mustParse(t, minimal, nil)
	checks := []struct {
		name      string
		got, want any
	}{
		{"namespace", c.Namespace, DefaultNamespace},
		{"plugin_dir", c.PluginDir, ""},
		{"restapi.verify_client", c.RESTAPI.VerifyClient, "none"},
		{"restapi.request_queue_size", c.RESTAPI.RequestQueueSize, 5},
		{"restapi.server_tokens", c.RESTAPI.ServerTokens, "original"},
		{"log.level", c.Log.Level, "INFO"},
		{"log.type", c.Log.Type, "plain"},
		{"log.file_num", c.Log.FileNum, 4},
		{"log.file_size", c.Log.FileSize, Size(25000000)},
		{"bootstrap.method", c.Bootstrap.Method, "initdb"},
		{"postgresql.pg_ctl_timeout", c.PostgreSQL.PGCtlTimeout, 60 * time.Second},
		{"postgresql.use_pg_rewind", c.PostgreSQL.UsePgRewind, (*bool)(nil)},
		{"watchdog.mode", c.Watchdog.Mode, "automatic"},
		{"watchdog.driver", c.Watchdog.Driver, "default"},
		{"watchdog.device", c.Watchdog.Device, "/dev/watchdog"},
		{"watchdog.safety_margin", c.Watchdog.SafetyMargin, 5 * time.Second},
		{"tags.failover_priority", c.Tags.FailoverPriority, 1},
		{"tags.sync_priority", c.Tags.SyncPriority, 1},
		{"dcs.maximum_lag_on_syncnode", c.Dynamic().MaximumLagOnSyncnode, Size(-1)},
		{"dcs.primary_start_timeout", c.Dynamic().PrimaryStartTimeout, Seconds(300)},
		{"dcs.synchronous_mode", c.Dynamic().SynchronousMode, SyncOff},
		{"dcs.synchronous_node_count", c.Dynamic().SynchronousNodeCount, 1},
		{"dcs.member_slots_ttl", c.Dynamic().MemberSlotsTTL, Seconds(1800)},
		{"dcs.postgresql.use_slots", c.Dynamic().PostgreSQL.UseSlots, true},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestFullConfig(t *testing.T) {
	c, err := Load("testdata/full.toml", nil)
	if err != nil {
		t.Fatalf("full config has problems:\n%v", err)
	}

	// What JSON cannot show: secrets, typed values, helpers.
	secrets := map[string]Secret{
		"restapi.authentication.password":                 c.RESTAPI.Authentication.Password,
		"restapi.keyfile_password":                        c.RESTAPI.KeyFilePassword,
		"ctl.authentication.password":                     c.Ctl.Authentication.Password,
		"ctl.keyfile_password":                            c.Ctl.KeyFilePassword,
		"postgresql.authentication.superuser.password":    c.PostgreSQL.Authentication.Superuser.Password,
		"postgresql.authentication.superuser.sslpassword": c.PostgreSQL.Authentication.Superuser.SSLPassword,
		"postgresql.authentication.replication.password":  c.PostgreSQL.Authentication.Replication.Password,
		"postgresql.authentication.rewind.password":       c.PostgreSQL.Authentication.Rewind.Password,
	}
	want := map[string]string{
		"restapi.authentication.password":                 "rest-pass",
		"restapi.keyfile_password":                        "rest-key-pass",
		"ctl.authentication.password":                     "ctl-pass",
		"ctl.keyfile_password":                            "ctl-key-pass",
		"postgresql.authentication.superuser.password":    "su-pass",
		"postgresql.authentication.superuser.sslpassword": "su-ssl-pass",
		"postgresql.authentication.replication.password":  "rep-pass",
		"postgresql.authentication.rewind.password":       "rewind-pass",
	}
	for k, s := range secrets {
		if s.Value() != want[k] {
			t.Errorf("%s = %q, want %q", k, s.Value(), want[k])
		}
	}
	if got := strings.Join(c.Bootstrap.Initdb.Args(), " "); got != "--data-checksums --encoding=UTF8 --locale=C.UTF-8" {
		t.Errorf("initdb args = %q", got)
	}
	if got := strings.Join(c.PostgreSQL.Basebackup.Args(), " "); got != "--verbose --max-rate=100M --checkpoint=fast" {
		t.Errorf("basebackup args = %q", got)
	}
	if got := strings.Join(c.PostgreSQL.Rewind.Args(), " "); got != "--debug" {
		t.Errorf("rewind args = %q", got)
	}
	if c.PostgreSQL.PGCtlTimeout != 90*time.Second {
		t.Errorf("pg_ctl_timeout = %v, want 90s", c.PostgreSQL.PGCtlTimeout)
	}
	if c.PostgreSQL.UsePgRewind == nil || !*c.PostgreSQL.UsePgRewind {
		t.Errorf("postgresql.use_pg_rewind = %v, want true", c.PostgreSQL.UsePgRewind)
	}
	if c.Watchdog.SafetyMargin != WatchdogSafetyMarginHalfTTL {
		t.Errorf("safety_margin = %v, want the ttl/2 marker", c.Watchdog.SafetyMargin)
	}
	if c.Log.FileSize != 50<<20 {
		t.Errorf("log.file_size = %d, want 50MB", c.Log.FileSize)
	}
	if c.Log.Level != "DEBUG" || c.RESTAPI.VerifyClient != "optional" {
		t.Errorf("enums not normalized: level %q, verify_client %q", c.Log.Level, c.RESTAPI.VerifyClient)
	}
	dyn := c.Dynamic()
	if dyn.PrimaryStartTimeout != 120 {
		t.Errorf("master_start_timeout alias: primary_start_timeout = %d, want 120", dyn.PrimaryStartTimeout)
	}
	if dyn.MemberSlotsTTL != 3600 || dyn.SynchronousMode != SyncQuorum {
		t.Errorf("member_slots_ttl = %d, synchronous_mode = %q", dyn.MemberSlotsTTL, dyn.SynchronousMode)
	}
	if got := dyn.PostgreSQL.Parameters["wal_log_hints"].String(); got != "on" {
		t.Errorf("wal_log_hints renders %q, want on", got)
	}
	if got := c.PostgreSQL.RecoveryConf["primary_conninfo"]; got != "host=x password=conninfo-pass" {
		t.Errorf("recovery_conf.primary_conninfo = %v", got)
	}
	if got := c.Bootstrap.Methods["restore"].Params["jobs"]; got != int64(4) {
		t.Errorf("bootstrap.restore.jobs = %#v", got)
	}
	if got := c.PostgreSQL.ReplicaMethods["pgbackrest"]["keep_data"]; got != true {
		t.Errorf("postgresql.pgbackrest.keep_data = %#v", got)
	}
	if got := c.Plugins["dcs-etcd3"].SHA256; got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("sha256 not normalized: %q", got)
	}
	js, err := c.DCSConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"hosts":["10.0.0.1:2379","10.0.0.2:2379"],"password":"etcd-pass","protocol":"https","tls":{"cacert":"/etc/custos/etcd-ca.crt"},"username":"custos"}`; string(js) != want {
		t.Errorf("DCSConfigJSON() =\n%s\nwant\n%s", js, want)
	}

	// Everything else: the loaded config as it is logged.
	got, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "testdata/full.golden", append(got, '\n'))
}

func checkGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	goldenfile.Check(t, file, got)
}

// TestThreeMistakes is the example from the docs: every mistake is
// reported at once, each with its path and line.
func TestThreeMistakes(t *testing.T) {
	src := `scope = "demo"
name = "node1"

[restapi]
listen = "127.0.0.1:8008"
connect_address = "127.0.0.1:8008"
lisen = "127.0.0.1:8009"

[dcs.etcd3]
hosts = ["127.0.0.1:2379"]

[postgresql]
listen = "127.0.0.1:5432"
connect_address = "127.0.0.1:5432"
pg_ctl_timeout = true

[postgresql.authentication.superuser]
username = "postgres"

[postgresql.authentication.replication]
username = "replicator"
`
	ps := problemsOf(t, src, nil)
	want := `custos.toml:7: restapi.lisen: unknown key
custos.toml:12: postgresql.data_dir: missing required value
custos.toml:15: postgresql.pg_ctl_timeout: wrong type: expected integer seconds or a duration string, got a boolean`
	if got := ps.Error(); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
	if ps[0].Path != "restapi.lisen" || ps[0].Line != 7 || ps[0].File != "custos.toml" {
		t.Errorf("first problem = %+v", ps[0])
	}
}

func TestProblems(t *testing.T) {
	// Each case edits the minimal config; the line is that of the marker.
	tests := []struct {
		name    string
		edit    func(string) string
		path    string
		marker  string // "" = no line expected
		message string
	}{
		{"syntax error", appendText("\nx = = 1 # <-\n"), "", "# <-", "TOML syntax error"},
		{"duplicate key", replace(`name = "node1"`, "name = \"node1\"\nname = \"x\" # <-"), "", "# <-", "TOML syntax error"},
		{"unknown top-level key", appendTop(`colour = "blue" # <-`), "colour", "# <-", "unknown key"},
		{"unknown section", appendText("\n[replication] # <-\nx = 1\n"), "replication", "# <-", "unknown key"},
		{"unknown nested key", appendText("\n[postgresql.callbacks]\non_strat = \"x\" # <-\n"), "postgresql.callbacks.on_strat", "# <-", "unknown key"},
		{"unknown key in bootstrap.dcs.postgresql is kept, but typo in auth is not",
			replace(`username = "postgres"`, "username = \"postgres\"\nuser = \"x\" # <-"), "postgresql.authentication.superuser.user", "# <-", "unknown key"},
		{"scalar typo in bootstrap", appendText("\n[bootstrap]\nmethd = \"x\" # <-\n"), "bootstrap.methd", "# <-", "unknown key"},
		{"stray replica method section", appendText("\n[postgresql.paramters] # <-\nx = 1\n"), "postgresql.paramters", "# <-", "unknown key"},
		{"wrong type string", replace(`name = "node1"`, `name = 5 # <-`), "name", "# <-", "wrong type: expected a string, got an integer"},
		{"wrong type parameter", replace(`wal_keep_size = "128MB"`, `wal_keep_size = ["a"] # <-`), "postgresql.parameters.wal_keep_size", "# <-", "wrong type"},
		{"missing scope", replace(`scope = "demo"`, ``), "scope", "", "missing required value"},
		{"empty name", replace(`name = "node1"`, `name = "" # <-`), "name", "# <-", "missing required value (it is empty)"},
		{"missing key: line of its section", replace("[restapi]\nlisten = \"127.0.0.1:8008\"\n", "[restapi]\n"), "restapi.listen", "[restapi]", "missing required value"},
		{"missing replication user", replace("[postgresql.authentication.replication]\nusername = \"replicator\"", "[postgresql.authentication.replication] # <-"), "postgresql.authentication.replication.username", "# <-", "missing required value"},
		{"bad duration", appendPG(`pg_ctl_timeout = "soon" # <-`), "postgresql.pg_ctl_timeout", "# <-", `bad duration "soon"`},
		{"zero duration", appendPG(`pg_ctl_timeout = 0 # <-`), "postgresql.pg_ctl_timeout", "# <-", "out of range"},
		{"bad size", appendText("\n[log]\nfile_size = \"12 parsecs\" # <-\n"), "log.file_size", "# <-", "bad size"},
		{"bad enum", appendText("\n[watchdog]\nmode = \"sometimes\" # <-\n"), "watchdog.mode", "# <-", `invalid value "sometimes": want one of off, automatic, required`},
		{"bad watchdog driver", appendText("\n[watchdog]\ndriver = \"softdog\" # <-\n"), "watchdog.driver", "# <-", `invalid value "softdog": want one of default, process`},
		{"default driver without device", appendText("\n[watchdog]\ndevice = \"\" # <-\n"), "watchdog.device", "# <-", "missing required value (it is empty)"},
		{"process driver needs no device", appendText("\n[watchdog]\nmode = \"required\"\ndriver = \"Process\"\ndevice = \"\"\n"), "", "", ""},
		{"bad log level", appendText("\n[log]\nlevel = \"LOUD\" # <-\n"), "log.level", "# <-", "invalid value"},
		{"bad sslmode", replace(`password = "secret"`, "password = \"secret\"\nsslmode = \"maybe\" # <-"), "postgresql.authentication.superuser.sslmode", "# <-", "invalid value"},
		{"bad listen port", replace(`listen = "127.0.0.1:8008"`, `listen = "127.0.0.1:80080" # <-`), "restapi.listen", "# <-", "invalid listen address"},
		{"listen without port", replace(`listen = "127.0.0.1:5432"`, `listen = "127.0.0.1" # <-`), "postgresql.listen", "# <-", "want host:port"},
		{"wildcard connect address", replace(`connect_address = "127.0.0.1:5432"`, `connect_address = "0.0.0.0:5432" # <-`), "postgresql.connect_address", "# <-", "wildcard"},
		{"connect address without host", replace(`connect_address = "127.0.0.1:8008"`, `connect_address = ":8008" # <-`), "restapi.connect_address", "# <-", "host is missing"},
		{"ttl below minimum", replace(`ttl = 30`, `ttl = 0 # <-`), "bootstrap.dcs.ttl", "# <-", "below the minimum 1"},
		{"no REST API connection at all", replace(`listen = "127.0.0.1:8008"`, "listen = \"127.0.0.1:8008\"\nrequest_queue_size = 0 # <-"), "restapi.request_queue_size", "# <-", "below the minimum 1"},
		{"timing rule", replace(`retry_timeout = 10`, `retry_timeout = 20`), "bootstrap.dcs.ttl", "ttl = 30", "loop_wait + 2*retry_timeout must not exceed ttl"},
		{"dynamic wrong type", replace(`loop_wait = 10`, `loop_wait = "often" # <-`), "bootstrap.dcs.loop_wait", "# <-", "bad duration"},
		{"unknown dynamic key is kept", appendText("\n[bootstrap.dcs.x]\n"), "", "", ""},
		{"dynamic bad sync mode", replace(`ttl = 30`, "ttl = 30\nsynchronous_mode = \"maybe\" # <-"), "bootstrap.dcs.synchronous_mode", "# <-", `invalid value "maybe"`},
		{"dynamic slot without plugin", appendText("\n[bootstrap.dcs.slots.cdc] # <-\ntype = \"logical\"\ndatabase = \"app\"\n"), "bootstrap.dcs.slots.cdc.plugin", "# <-", "missing required value"},
		{"forbidden initdb option", appendText("\n[bootstrap]\ninitdb = [\"data-checksums\", {pgdata = \"/x\"}] # <-\n"), "bootstrap.initdb", "# <-", `option "pgdata" is not allowed`},
		{"initdb item with two keys", appendText("\n[bootstrap]\ninitdb = [{a = \"1\", b = \"2\"}] # <-\n"), "bootstrap.initdb[0]", "# <-", "exactly one key"},
		{"custom method without section", appendText("\n[bootstrap]\nmethod = \"clone\" # <-\n"), "bootstrap.method", "# <-", "no [bootstrap.clone] section"},
		{"standby cluster", appendText("\n[bootstrap.dcs.standby_cluster] # <-\nhost = \"primary.example.net\"\n"), "bootstrap.dcs.standby_cluster", "# <-", "not supported yet"},
		{"no_params without command", appendText("\n[bootstrap.clone]\nno_params = true # <-\n"), "bootstrap.clone.no_params", "# <-", "applies to a command"},
		{"no dcs section", replace("[dcs.etcd3]\nhosts = [\"127.0.0.1:2379\"]", ""), "dcs", "", "configure exactly one DCS section"},
		{"two dcs sections", appendText("\n[dcs.consul] # <-\nhost = \"127.0.0.1:8500\"\n"), "dcs.consul", "# <-", "conflicting values: only one DCS section is allowed, found [dcs.etcd3] and [dcs.consul]"},
		{"nofailover with priority", appendText("\n[tags]\nnofailover = true\nfailover_priority = 3 # <-\n"), "tags.failover_priority", "# <-", "conflicting values"},
		{"negative priority", appendText("\n[tags]\nsync_priority = -1 # <-\n"), "tags.sync_priority", "# <-", "out of range"},
		{"auth without password", appendText("\n[restapi.authentication] # <-\nusername = \"admin\"\n"), "restapi.authentication", "# <-", "set both username and password"},
		{"keyfile without certfile", appendText("\n[ctl]\nkeyfile = \"/k\" # <-\n"), "ctl.keyfile", "# <-", "keyfile is set but certfile is not"},
		{"verify_client without TLS", replace(`connect_address = "127.0.0.1:8008"`, "connect_address = \"127.0.0.1:8008\"\nverify_client = \"required\" # <-"), "restapi.verify_client", "# <-", "needs TLS"},
		{"bad sha256", appendText("\n[plugins.dcs-etcd3]\nsha256 = \"abc\" # <-\n"), "plugins.dcs-etcd3.sha256", "# <-", "64 hexadecimal"},
		{"plugins entry not a table", appendText("\n[plugins]\ndcs-etcd3 = \"abc\" # <-\n"), "plugins.dcs-etcd3", "# <-", "wrong type: expected a table"},
		{"name with slash", replace(`name = "node1"`, `name = "a/b" # <-`), "name", "# <-", "cannot contain '/'"},
		{"unknown subsection", appendText("\n[restapi.x]\n"), "restapi.x", "[restapi.x]", "unknown key"},
		{"quoted key path", appendText("\n[tags.\"my.tag\"]\nx = 1\n"), "", "", ""}, // a table as a custom tag is fine
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.edit(minimal)
			if tc.message == "" && tc.path == "" {
				mustParse(t, src, nil)
				return
			}
			ps := problemsOf(t, src, nil)
			var found *Problem
			for i := range ps {
				if ps[i].Path == tc.path && strings.Contains(ps[i].Message, tc.message) {
					found = &ps[i]
				}
			}
			if found == nil {
				t.Fatalf("no problem at %q containing %q; got:\n%v", tc.path, tc.message, ps)
			}
			wantLine := 0
			if tc.marker != "" {
				wantLine = lineWith(t, src, tc.marker)
			}
			if found.Line != wantLine {
				t.Errorf("line = %d, want %d (%v)", found.Line, wantLine, found)
			}
			if len(ps) != 1 {
				t.Errorf("want exactly one problem, got:\n%v", ps)
			}
		})
	}
}

func appendText(s string) func(string) string { return func(src string) string { return src + s } }
func appendTop(s string) func(string) string {
	return func(src string) string { return s + "\n" + src }
}
func appendPG(s string) func(string) string {
	return replace(`data_dir = "/var/lib/custos/node1"`, "data_dir = \"/var/lib/custos/node1\"\n"+s)
}
func replace(old, new string) func(string) string {
	return func(src string) string {
		if !strings.Contains(src, old) {
			panic("test edit: " + old + " not in source")
		}
		return strings.Replace(src, old, new, 1)
	}
}

func TestWrongTypesAreReportedOnce(t *testing.T) {
	// A wrong type leaves the default in place; it must not also show up
	// as "missing" or "out of range".
	src := strings.Replace(minimal, `data_dir = "/var/lib/custos/node1"`, `data_dir = 42`, 1)
	src = strings.Replace(src, `ttl = 30`, `ttl = "x"`, 1)
	src = strings.Replace(src, `[restapi]`, "[restapi]\nrequest_queue_size = \"many\"\nallowlist = \"10.0.0.1\"", 1)
	ps := problemsOf(t, src, nil)
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	want := []string{"restapi.request_queue_size", "restapi.allowlist", "bootstrap.dcs.ttl", "postgresql.data_dir"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %v, want %v\n%v", paths, want, ps)
	}
}

func TestDCSProblemMapsPluginPaths(t *testing.T) {
	src := minimal + "\n[dcs.etcd3.tls]\ncacert = \"/ca.pem\"\n"
	c := mustParse(t, src, nil)
	tests := []struct {
		keyPath string
		want    string
	}{
		{"hosts", "custos.toml:9: dcs.etcd3.hosts: bad host"},
		{"tls.cacert", "custos.toml:38: dcs.etcd3.tls.cacert: bad host"},
		{"tls.cert", "custos.toml:37: dcs.etcd3.tls.cert: bad host"}, // absent: its table's line
		{"protocol", "custos.toml:8: dcs.etcd3.protocol: bad host"},  // absent: the section's line
		{"hosts[1]", "custos.toml:9: dcs.etcd3.hosts[1]: bad host"},  // list item: the list's line
		{"", "custos.toml:8: dcs.etcd3: bad host"},                   // the whole section
	}
	for _, tc := range tests {
		if got := c.DCSProblem(tc.keyPath, "bad host").String(); got != tc.want {
			t.Errorf("DCSProblem(%q) = %q, want %q", tc.keyPath, got, tc.want)
		}
	}
	if got := c.DCSLine("tls.cacert"); got != 38 {
		t.Errorf("DCSLine(tls.cacert) = %d, want 38", got)
	}
}

func TestPluginDir(t *testing.T) {
	exe := filepath.Join("/opt", "custos", "bin", "custos")
	if got, want := DefaultPluginDir(exe), filepath.Join("/opt", "custos", "bin", "plugins"); got != want {
		t.Errorf("DefaultPluginDir = %q, want %q", got, want)
	}
	c := mustParse(t, minimal, nil)
	if got := c.PluginDirFor(exe); got != filepath.Join("/opt", "custos", "bin", "plugins") {
		t.Errorf("PluginDirFor without plugin_dir = %q", got)
	}
	c = mustParse(t, `plugin_dir = "/srv/plugins"`+"\n"+minimal, nil)
	if got := c.PluginDirFor(exe); got != "/srv/plugins" {
		t.Errorf("PluginDirFor with plugin_dir = %q", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want a wrapped ErrNotExist", err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "custos.toml"), nil)
	if err != nil {
		t.Fatalf("examples/custos.toml has problems:\n%v", err)
	}
	if c.DCSName() == "" || c.Name == "" {
		t.Errorf("example config lacks a name or DCS: %+v", c)
	}
}
