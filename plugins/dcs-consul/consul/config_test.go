package consul

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
)

func TestParseConfigAddress(t *testing.T) {
	for _, tc := range []struct {
		name, json          string
		scheme, host        string
		port                int
		wantURL, wantString string
	}{
		{name: "empty section: the local agent", json: ``, scheme: "http", host: "127.0.0.1", port: 8500},
		{name: "null", json: `null`, scheme: "http", host: "127.0.0.1", port: 8500},
		{name: "host with port", json: `{"host": "consul.local:8501"}`, scheme: "http", host: "consul.local", port: 8501},
		{name: "host without port", json: `{"host": "consul.local"}`, scheme: "http", host: "consul.local", port: 8500},
		{name: "port key wins over host's port", json: `{"host": "10.0.0.1:8501", "port": 9500}`, scheme: "http", host: "10.0.0.1", port: 9500},
		{name: "port as a string", json: `{"port": "9500"}`, scheme: "http", host: "127.0.0.1", port: 9500},
		{name: "IPv6 with port", json: `{"host": "[::1]:8501"}`, scheme: "http", host: "::1", port: 8501},
		{name: "bare IPv6", json: `{"host": "::1"}`, scheme: "http", host: "::1", port: 8500},
		{name: "scheme https", json: `{"host": "c:1", "scheme": "https"}`, scheme: "https", host: "c", port: 1},
		{name: "url wins over host, port and scheme", json: `{"url": "https://consul.example:8443", "host": "other:1", "port": 2, "scheme": "http"}`,
			scheme: "https", host: "consul.example", port: 8443},
		{name: "url without port", json: `{"url": "http://consul.example/"}`, scheme: "http", host: "consul.example", port: 8500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if c.Scheme != tc.scheme || c.Host != tc.host || c.Port != tc.port {
				t.Fatalf("got %s://%s port %d, want %s://%s port %d", c.Scheme, c.Host, c.Port, tc.scheme, tc.host, tc.port)
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Verify || c.Consistency != ConsistencyConsistent || c.RegisterService || c.ServiceCheckInterval != 5*time.Second ||
		c.hasServiceCheckTLSServerName || len(c.Checks) != 0 || c.Address() != "127.0.0.1:8500" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestParseConfigAllKeys(t *testing.T) {
	c, err := ParseConfig([]byte(`{
		"host": "c1:8500", "token": "s3cr3t", "verify": "off", "cacert": "/ca.pem", "cert": "/c.pem", "key": "/k.pem",
		"dc": "dc2", "consistency": "stale", "checks": "serfHealth, service:pg", "register_service": "yes",
		"service_tags": ["b", "a"], "service_check_interval": 2.5, "service_check_tls_server_name": ""}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != "s3cr3t" || c.Verify || c.TLS.CACert != "/ca.pem" || c.TLS.Cert != "/c.pem" || c.TLS.Key != "/k.pem" || c.DC != "dc2" ||
		c.Consistency != ConsistencyStale || !slices.Equal(c.Checks, []string{"serfHealth", "service:pg"}) || !c.RegisterService ||
		!slices.Equal(c.ServiceTags, []string{"b", "a"}) || c.ServiceCheckInterval != 2500*time.Millisecond ||
		!c.hasServiceCheckTLSServerName || c.ServiceCheckTLSServerName != "" {
		t.Fatalf("parsed %+v", c)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, "s3cr3t") {
			t.Fatalf("the token prints: %s", s)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		json  string
		paths []string
	}{
		{`{"hosts": ["a"]}`, []string{"hosts"}},
		{`[1]`, []string{""}},
		{`{`, []string{""}},
		{`{"host": "http://c:8500"}`, []string{"host"}},
		{`{"host": "c:99999"}`, []string{"host"}},
		{`{"host": ""}`, []string{"host"}},
		{`{"host": 5}`, []string{"host"}},
		{`{"port": 0}`, []string{"port"}},
		{`{"port": true}`, []string{"port"}},
		{`{"url": "consul:8500"}`, []string{"url"}},
		{`{"url": "http://user:pw@c:8500"}`, []string{"url"}},
		{`{"url": "http://c:8500/v1"}`, []string{"url"}},
		{`{"url": "http://c:8500", "host": "bad host"}`, []string{"host"}},
		{`{"scheme": "ftp"}`, []string{"scheme"}},
		{`{"scheme": ""}`, []string{"scheme"}},
		{`{"verify": "maybe"}`, []string{"verify"}},
		{`{"key": "/k.pem"}`, []string{"cert"}},
		{`{"consistency": "strong"}`, []string{"consistency"}},
		{`{"dc": "a/b"}`, []string{"dc"}},
		{`{"checks": [1, "a"]}`, []string{"checks[0]"}},
		{`{"checks": ["a", " "]}`, []string{"checks[1]"}},
		{`{"checks": {"a": 1}}`, []string{"checks"}},
		{`{"register_service": 1}`, []string{"register_service"}},
		{`{"service_tags": [""]}`, []string{"service_tags[0]"}},
		{`{"service_check_interval": "5"}`, []string{"service_check_interval"}},
		{`{"service_check_interval": "-1s"}`, []string{"service_check_interval"}},
		{`{"service_check_interval": 0}`, []string{"service_check_interval"}},
		{`{"service_check_tls_server_name": false}`, []string{"service_check_tls_server_name"}},
		// Every problem at once.
		{`{"port": "x", "scheme": "ftp", "nope": 1, "token": 5}`, []string{"nope", "port", "scheme", "token"}},
	} {
		t.Run(tc.json, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want *sdk.ConfigError, got %v", err)
			}
			var paths []string
			for _, p := range ce.Problems {
				paths = append(paths, p.Path)
			}
			slices.Sort(paths)
			if !slices.Equal(paths, tc.paths) {
				t.Fatalf("problems %q, want paths %q", ce.Problems, tc.paths)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"host": "c"}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := c.tlsConfig(); cfg != nil || err != nil {
		t.Fatalf("http got TLS %v %v", cfg, err)
	}
	c, err = ParseConfig([]byte(`{"host": "c", "scheme": "https", "verify": false}`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.tlsConfig()
	if err != nil || !cfg.InsecureSkipVerify || cfg.ServerName != "c" {
		t.Fatalf("verify=false: %+v %v", cfg, err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A CA file turns verification on whatever verify says (Patroni), and
	// unreadable files are reported with their keys.
	c, err = ParseConfig([]byte(fmt.Sprintf(`{"scheme": "https", "verify": false, "cacert": %q, "cert": %q}`, bad, filepath.Join(dir, "missing.pem"))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.tlsConfig()
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 2 || ce.Problems[0].Path != "cacert" || ce.Problems[1].Path != "cert" {
		t.Fatalf("want cacert and cert problems, got %v", err)
	}
}

func TestValidateConnectsNowhere(t *testing.T) {
	b := New(nil)
	if err := b.Validate(t.Context(), []byte(`{"url": "https://203.0.113.1:8501", "cacert": "/does/not/exist"}`)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if err := b.Validate(t.Context(), []byte(`{"no_such_key": 1}`)); err == nil {
		t.Fatal("Validate accepted an unknown key")
	}
}

// FuzzParseConfig checks that any section either parses into a usable
// address or is refused with key paths, and never panics.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"host": "c:8500"}`, `{"url": "https://c:8501", "verify": "no"}`, `{"port": "x", "checks": [1]}`,
		`{"service_check_interval": 1e300}`, `{"host": "[::1]:1"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v is not a *sdk.ConfigError with problems", err)
			}
			return
		}
		if c.Host == "" || c.Port < 1 || c.Port > 65535 || (c.Scheme != "http" && c.Scheme != "https") {
			t.Fatalf("accepted %q as %+v", data, c)
		}
	})
}
