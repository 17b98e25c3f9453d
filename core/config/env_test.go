package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"CUSTOS_NAME":                       "node9",
		"CUSTOS_SCOPE":                      "prod",
		"CUSTOS_NAMESPACE":                  "/db",
		"CUSTOS_PLUGIN_DIR":                 "/srv/plugins",
		"CUSTOS_LOG_LEVEL":                  "warning",
		"CUSTOS_LOG_FILE_SIZE":              "10MB",
		"CUSTOS_LOG_STATIC_FIELDS":          `{ app = "custos", zone = 3 }`,
		"CUSTOS_RESTAPI_LISTEN":             "0.0.0.0:9008",
		"CUSTOS_RESTAPI_CONNECT_ADDRESS":    "10.1.1.1:9008",
		"CUSTOS_RESTAPI_USERNAME":           "api",
		"CUSTOS_RESTAPI_PASSWORD":           "api-pass",
		"CUSTOS_RESTAPI_ALLOWLIST":          "10.0.0.1, 10.0.0.2",
		"CUSTOS_RESTAPI_HTTP_EXTRA_HEADERS": `{ X-A = "1" }`,
		"CUSTOS_RESTAPI_REQUEST_QUEUE_SIZE": "7",
		"CUSTOS_CTL_INSECURE":               "true",
		"CUSTOS_CTL_USERNAME":               "ctl",
		"CUSTOS_CTL_PASSWORD":               "ctl-pass",
		"CUSTOS_POSTGRESQL_DATA_DIR":        "/data/pg",
		"CUSTOS_POSTGRESQL_PROXY_ADDRESS":   "10.1.1.1:6432",
		"CUSTOS_POSTGRESQL_BIN_PG_CTL":      "pg_ctl.custom",
		"CUSTOS_SUPERUSER_PASSWORD":         "12345",
		"CUSTOS_SUPERUSER_SSLMODE":          "require",
		"CUSTOS_REPLICATION_USERNAME":       "repl2",
		"CUSTOS_REWIND_USERNAME":            "rewinder",
		"CUSTOS_REWIND_PASSWORD":            "rw",
		"CUSTOS_ETCD3_HOSTS":                "10.0.0.1:2379,10.0.0.2:2379",
		"CUSTOS_ETCD3_PASSWORD":             "777",
		"CUSTOS_ETCD3_USE_PROXIES":          "true",
		"CUSTOS_ETCD3_TLS":                  `{ cacert = "/ca.pem" }`,
		"CUSTOS_ETCD3_PROTOCOL":             "https",
		"UNRELATED":                         "x",
	}
	var looked []string
	lookup := func(k string) (string, bool) {
		looked = append(looked, k)
		v, ok := env[k]
		return v, ok
	}
	src := minimal + "\n[dcs.etcd3.tls]\ncacert = \"/file-ca.pem\"\n"
	c, err := Parse("custos.toml", []byte(src), lookup)
	if err != nil {
		t.Fatalf("problems:\n%v", err)
	}
	for _, k := range looked {
		if !strings.HasPrefix(k, EnvPrefix) {
			t.Errorf("looked up %q, which is not a CUSTOS_ variable", k)
		}
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", c.Name, "node9"},
		{"scope", c.Scope, "prod"},
		{"namespace", c.Namespace, "/db"},
		{"plugin_dir", c.PluginDir, "/srv/plugins"},
		{"log.level", c.Log.Level, "WARNING"},
		{"log.file_size", c.Log.FileSize, Size(10 << 20)},
		{"log.static_fields", c.Log.StaticFields, map[string]any{"app": "custos", "zone": int64(3)}},
		{"restapi.listen", c.RESTAPI.Listen, "0.0.0.0:9008"},
		{"restapi.connect_address", c.RESTAPI.ConnectAddress, "10.1.1.1:9008"},
		{"restapi.authentication.username", c.RESTAPI.Authentication.Username, "api"},
		{"restapi.authentication.password", c.RESTAPI.Authentication.Password.Value(), "api-pass"},
		{"restapi.allowlist", c.RESTAPI.Allowlist, []string{"10.0.0.1", "10.0.0.2"}},
		{"restapi.http_extra_headers", c.RESTAPI.HTTPExtraHeaders, map[string]string{"X-A": "1"}},
		{"restapi.request_queue_size", c.RESTAPI.RequestQueueSize, 7},
		{"ctl.insecure", c.Ctl.Insecure, true},
		{"ctl.authentication.password", c.Ctl.Authentication.Password.Value(), "ctl-pass"},
		{"postgresql.data_dir (file value overridden)", c.PostgreSQL.DataDir, "/data/pg"},
		{"postgresql.listen (file value kept)", c.PostgreSQL.Listen, "127.0.0.1:5432"},
		{"postgresql.proxy_address", c.PostgreSQL.ProxyAddress, "10.1.1.1:6432"},
		{"postgresql.bin_name.pg_ctl", c.PostgreSQL.BinName.PGCtl, "pg_ctl.custom"},
		{"superuser.password (numeric text stays a string)", c.PostgreSQL.Authentication.Superuser.Password.Value(), "12345"},
		{"superuser.sslmode", c.PostgreSQL.Authentication.Superuser.SSLMode, "require"},
		{"superuser.username (file value kept)", c.PostgreSQL.Authentication.Superuser.Username, "postgres"},
		{"replication.username", c.PostgreSQL.Authentication.Replication.Username, "repl2"},
		{"rewind.username", c.PostgreSQL.Authentication.Rewind.Username, "rewinder"},
		{"pg_ctl_timeout default", c.PostgreSQL.PGCtlTimeout, DefaultPGCtlTimeout},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	js, err := c.DCSConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"hosts":["10.0.0.1:2379","10.0.0.2:2379"],"password":"777","protocol":"https","tls":{"cacert":"/ca.pem"},"use_proxies":true}`
	if string(js) != want {
		t.Errorf("DCSConfigJSON() =\n%s\nwant\n%s", js, want)
	}
	// A plugin problem about an overridden key names the variable.
	if got := c.DCSProblem("hosts", "unreachable").String(); got != "env CUSTOS_ETCD3_HOSTS: dcs.etcd3.hosts: unreachable" {
		t.Errorf("DCSProblem(hosts) = %q", got)
	}
}

func TestEnvSuppliesMissingValues(t *testing.T) {
	src := strings.Replace(minimal, `data_dir = "/var/lib/custos/node1"`, "", 1)
	src = strings.Replace(src, "[dcs.etcd3]\nhosts = [\"127.0.0.1:2379\"]", "", 1)
	c := mustParse(t, src, map[string]string{
		"CUSTOS_POSTGRESQL_DATA_DIR": "/data",
		"CUSTOS_CONSUL_HOST":         "127.0.0.1:8500",
		"CUSTOS_CONSUL_PORT":         "8500",
	})
	if c.PostgreSQL.DataDir != "/data" {
		t.Errorf("data_dir = %q", c.PostgreSQL.DataDir)
	}
	if c.DCSName() != "consul" {
		t.Fatalf("DCSName() = %q, want consul (created from the environment)", c.DCSName())
	}
	js, _ := c.DCSConfigJSON()
	if string(js) != `{"host":"127.0.0.1:8500","port":8500}` {
		t.Errorf("DCSConfigJSON() = %s", js)
	}
}

func TestEnvBadValuesNameTheVariable(t *testing.T) {
	ps := problemsOf(t, minimal, map[string]string{
		"CUSTOS_RESTAPI_REQUEST_QUEUE_SIZE": "many",
		"CUSTOS_POSTGRESQL_LISTEN":          "localhost",
		"CUSTOS_LOG_TYPE":                   "xml",
		"CUSTOS_CTL_INSECURE":               "perhaps",
		"CUSTOS_CONSUL_HOST":                "127.0.0.1:8500",
	})
	want := `env CUSTOS_CTL_INSECURE: ctl.insecure: wrong type: expected a boolean, got a string
env CUSTOS_CONSUL_HOST: dcs.consul: conflicting values: only one DCS section is allowed, found [dcs.etcd3] and [dcs.consul]
env CUSTOS_LOG_TYPE: log.type: invalid value "xml": want one of plain, json
env CUSTOS_POSTGRESQL_LISTEN: postgresql.listen: invalid listen address "localhost": want host:port
env CUSTOS_RESTAPI_REQUEST_QUEUE_SIZE: restapi.request_queue_size: wrong type: expected an integer, got a string`
	if got := ps.Error(); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}

func TestEnvDurationAndList(t *testing.T) {
	c := mustParse(t, minimal, map[string]string{
		"CUSTOS_RESTAPI_ALLOWLIST": `["10.0.0.1", "10.0.0.2"]`,
		"CUSTOS_LOG_FILE_NUM":      "9",
	})
	if !reflect.DeepEqual(c.RESTAPI.Allowlist, []string{"10.0.0.1", "10.0.0.2"}) || c.Log.FileNum != 9 {
		t.Errorf("allowlist = %q, file_num = %d", c.RESTAPI.Allowlist, c.Log.FileNum)
	}
}
