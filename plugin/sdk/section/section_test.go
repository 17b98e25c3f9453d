package section

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
)

// problems renders every problem of err as "path: message".
func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *sdk.ConfigError, got %T %v", err, err)
	}
	var out []string
	for _, p := range ce.Problems {
		out = append(out, p.Path+": "+p.Message)
	}
	return out
}

// checkProblems compares problems with want, each a "path: prefix".
func checkProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	got := problems(t, err)
	if len(got) != len(want) {
		t.Fatalf("got problems\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("problem %d is %q, want it to start with %q", i, got[i], w)
		}
	}
}

type sample struct {
	TLS      TLS
	Host     string
	Verify   bool
	Port     int
	Hosts    []string
	Interval time.Duration
	Name     string
	Nested   int
}

func decodeSample(data string) (*sample, error) {
	d, err := New([]byte(data))
	if err != nil {
		return nil, err
	}
	s := &sample{Verify: true, Port: 2379}
	d.String("host", &s.Host)
	d.Bool("verify", &s.Verify)
	d.Port("port", &s.Port)
	d.Strings("hosts", &s.Hosts)
	d.Duration("interval", &s.Interval)
	d.TLS(&s.TLS)
	if v, ok := d.Value("nested"); ok {
		if n, ok := d.Table(d.Path("nested"), v); ok {
			n.String("name", &s.Name)
			n.Port("port", &s.Nested)
			n.Done()
		}
	}
	return s, d.Err()
}

func TestDecodeAccepts(t *testing.T) {
	for in, want := range map[string]sample{
		``:     {Verify: true, Port: 2379},
		`null`: {Verify: true, Port: 2379},
		`{}`:   {Verify: true, Port: 2379},
		`{"host": "a", "verify": false, "port": 1, "hosts": ["x", "y"], "interval": "1m30s"}`: {
			Host: "a", Port: 1, Hosts: []string{"x", "y"}, Interval: 90 * time.Second,
		},
		// What environment variables carry.
		`{"verify": "Off", "port": "2380", "hosts": "x, y,", "interval": 2.5}`: {
			Port: 2380, Hosts: []string{"x", "y"}, Interval: 2500 * time.Millisecond,
		},
		`{"verify": "yes", "nested": {"name": "n", "port": 5}}`: {Verify: true, Port: 2379, Name: "n", Nested: 5},
		`{"cacert": "/ca", "cert": "/c", "key": "/k"}`: {
			TLS: TLS{CACert: "/ca", Cert: "/c", Key: "/k"}, Verify: true, Port: 2379,
		},
	} {
		got, err := decodeSample(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%s: got %+v, want %+v", in, *got, want)
		}
	}
}

func TestDecodeProblems(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`{`, []string{": not valid JSON"}},
		{`{} {}`, []string{": not valid JSON"}},
		{`{}}`, []string{": not valid JSON"}},
		{`[1]`, []string{": must be a table of keys, got a list"}},
		{`"x"`, []string{`: must be a table of keys, got a string "x"`}},
		{`{"host": 1, "verify": "maybe", "port": 0, "hosts": [1, "a", true], "interval": "-1s"}`, []string{
			"host: must be a string, got a number 1",
			`verify: must be true or false, got a string "maybe"`,
			`port: port "0" is not a number from 1 to 65535`,
			"hosts[0]: must be a string, got a number 1",
			"hosts[2]: must be a string, got a boolean true",
			"interval: must be positive",
		}},
		{`{"port": true, "hosts": {"a": 1}, "interval": 0, "verify": null}`, []string{
			"verify: must be true or false, got null",
			"port: must be a port number, got a boolean true",
			"hosts: must be a list of strings or a comma-separated string, got a table",
			"interval: must be a positive number of seconds",
		}},
		{`{"interval": "5", "hostz": 1, "a": 2}`, []string{
			"interval: must be a duration",
			"a: unknown key (known: cacert, cert, host, hosts, interval, key, nested, port, verify)",
			"hostz: unknown key (known: cacert, cert, host, hosts, interval, key, nested, port, verify)",
		}},
		{`{"nested": [1]}`, []string{"nested: must be a table, got a list"}},
		{`{"key": "/k", "cacert": 1}`, []string{"cacert: must be a string", "cert: must be set with key"}},
		{`{"nested": {"name": 1, "port": "x", "extra": 1}}`, []string{
			"nested.name: must be a string",
			`nested.port: port "x" is not a number`,
			"nested.extra: unknown key (known: name, port)",
		}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := decodeSample(tc.in)
			checkProblems(t, err, tc.want...)
		})
	}
}

func TestFailed(t *testing.T) {
	d, err := New([]byte(`{"hosts": ["a", 1], "nested": {"port": 0}, "host": "h"}`))
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	var host string
	d.Strings("hosts", &hosts)
	d.String("host", &host)
	v, _ := d.Value("nested")
	n, _ := d.Table("nested", v)
	var port int
	n.Port("port", &port)
	n.Done()
	for path, want := range map[string]bool{"hosts": true, "nested": true, "nested.port": true, "host": false, "hos": false} {
		if got := d.Failed(path); got != want {
			t.Errorf("Failed(%q) = %v, want %v", path, got, want)
		}
	}
	if !d.Has("host") || d.Has("port") {
		t.Error("Has does not follow the section")
	}
}

func TestSecret(t *testing.T) {
	type conf struct{ Password, Empty Secret }
	c := conf{Password: "hunter2"}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.Password), string(js)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("the secret prints: %s", out)
		}
	}
	if got := fmt.Sprint(c.Empty); got != "" {
		t.Errorf("an empty secret prints %q", got)
	}
}

func TestTLS(t *testing.T) {
	// Self-signed test certificates; the encrypted key's password is s3cret.
	cert, key, both := "testdata/plain-cert.pem", "testdata/plain-key.pem", "testdata/plain-both.pem"
	encCert, encKey := "testdata/encrypted-cert.pem", "testdata/encrypted-key.pem"
	pkcs8 := "testdata/pkcs8-encrypted-key.pem"
	for i, o := range []TLS{
		{},
		{CACert: cert, Cert: cert, Key: key, ServerName: "db"},
		{Cert: both, SkipVerify: true},
		{Cert: encCert, Key: encKey, KeyPassword: "s3cret"},
	} {
		cfg, err := o.Config()
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if (o.Cert != "") != (len(cfg.Certificates) == 1) || (o.CACert != "") != (cfg.RootCAs != nil) ||
			cfg.InsecureSkipVerify != o.SkipVerify || cfg.ServerName != o.ServerName || cfg.MinVersion != 0x0303 {
			t.Errorf("%d: %+v gave %+v", i, o, cfg)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		o    TLS
		want []string
	}{
		{TLS{CACert: missing, Cert: missing}, []string{"cacert: ", "cert: "}},
		{TLS{CACert: key}, []string{"cacert: " + key + " holds no PEM certificate"}},
		{TLS{Cert: cert, Key: missing}, []string{"key: "}},
		{TLS{Cert: cert}, []string{"key: not set, and cert"}},
		{TLS{Cert: cert, Key: cert}, []string{"cert: loading client certificate"}},
		{TLS{Cert: key, Key: key}, []string{"cert: loading client certificate"}},
		{TLS{Cert: cert, Key: encKey}, []string{"key_password: " + encKey + " is encrypted"}},
		{TLS{Cert: encCert, Key: encKey, KeyPassword: "wrong"}, []string{"key_password: decrypting"}},
		{TLS{Cert: cert, Key: key, KeyPassword: "x"}, []string{"key_password: " + key + " is not encrypted"}},
		{TLS{Cert: cert, Key: pkcs8}, []string{"key: " + pkcs8 + " is an encrypted PKCS#8 key"}},
		{TLS{KeyPassword: "x"}, []string{"key_password: needs cert and key"}},
	} {
		_, err := tc.o.Config()
		checkProblems(t, err, tc.want...)
	}
}

// FuzzNew checks that any input decodes or is refused with problems, and
// never panics.
func FuzzNew(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"host": "a", "port": "1"}`, `{"interval": 1e300}`, `[1]`, `{"nested": {"x": 1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSample(string(data))
		if err != nil {
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v is not a *sdk.ConfigError with problems", err)
			}
			return
		}
		if s.Port < 1 || s.Port > 65535 || s.Interval < 0 {
			t.Fatalf("accepted %q as %+v", data, s)
		}
	})
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]struct {
		host string
		port int
	}{
		"db":            {"db", 0},
		" db:2379 ":     {"db", 2379},
		"10.0.0.1":      {"10.0.0.1", 0},
		"[::1]:8500":    {"::1", 8500},
		"::1":           {"::1", 0},
		"[fe80::1]":     {"fe80::1", 0},
		"db.example:80": {"db.example", 80},
	} {
		host, port, err := HostPort(in)
		if err != nil || host != want.host || port != want.port {
			t.Errorf("HostPort(%q) = %q, %d, %v; want %q, %d", in, host, port, err, want.host, want.port)
		}
	}
	for in, want := range map[string]string{
		"":               "empty host",
		"http://db:2379": "not a URL",
		"db/x":           "is not a host[:port]",
		"u@db":           "is not a host[:port]",
		"a:b:c":          "is not a host[:port]",
		":2379":          "has no host",
		"db:0":           `port "0" is not a number from 1 to 65535`,
		"db:x":           `port "x"`,
	} {
		if _, _, err := HostPort(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("HostPort(%q): error %v, want it to say %q", in, err, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	if got := RedactURL("http://root:hunter2@db:2379"); strings.Contains(got, "hunter2") || !strings.Contains(got, "root") {
		t.Errorf("RedactURL gave %q", got)
	}
	if got := RedactURL("%zz"); got != "%zz" {
		t.Errorf("RedactURL of text that does not parse gave %q", got)
	}
}
