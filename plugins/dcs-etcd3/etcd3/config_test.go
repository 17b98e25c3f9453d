package etcd3

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
)

func problemPaths(t *testing.T, err error) []string {
	t.Helper()
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("want *sdk.ConfigError, got %T: %v", err, err)
	}
	paths := make([]string, 0, len(cfgErr.Problems))
	for _, p := range cfgErr.Problems {
		paths = append(paths, p.Path)
	}
	sort.Strings(paths)
	return paths
}

func TestParseConfigEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want []string
		from string
	}{
		{"hosts list", `{"hosts":["10.0.0.1:2379","etcd-b:3379"]}`, []string{"http://10.0.0.1:2379", "http://etcd-b:3379"}, "hosts"},
		{"hosts comma string", `{"hosts":"10.0.0.1:2379, 10.0.0.2:2379,"}`, []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}, "hosts"},
		{"hosts default port", `{"hosts":["a","b:1"],"port":4001}`, []string{"http://a:4001", "http://b:1"}, "hosts"},
		{"hosts ipv6", `{"hosts":["[::1]:2379","::1"]}`, []string{"http://[::1]:2379", "http://[::1]:2379"}, "hosts"},
		{"host https", `{"host":"etcd:2379","protocol":"https"}`, []string{"https://etcd:2379"}, "host"},
		{"host port as string", `{"host":"etcd","port":"2380"}`, []string{"http://etcd:2380"}, "host"},
		{"url", `{"url":"https://etcd.example.org"}`, []string{"https://etcd.example.org:2379"}, "url"},
		{"urls", `{"urls":"http://a:1,https://b:2/"}`, []string{"http://a:1", "https://b:2"}, "urls"},
		{"proxy wins", `{"proxy":"http://proxy:23790","hosts":["a:1"],"url":"http://b:2"}`, []string{"http://proxy:23790"}, "proxy"},
		{"url before hosts", `{"url":"http://b:2","hosts":["a:1"],"host":"c:3"}`, []string{"http://b:2"}, "url"},
		{"hosts before host", `{"hosts":["a:1"],"host":"c:3"}`, []string{"http://a:1"}, "hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.static, tc.want) || c.staticFrom != tc.from {
				t.Fatalf("endpoints %v from %s, want %v from %s", c.static, c.staticFrom, tc.want, tc.from)
			}
		})
	}
}

func TestParseConfigValues(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hosts":["a:1"],"username":"u","password":"p","cacert":"/ca","cert":"/c","key":"/k",
		"use_proxies":"true","srv":"example.org","srv_suffix":"blue"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "u" || c.Password != "p" || c.TLS.CACert != "/ca" || c.TLS.Cert != "/c" || c.TLS.Key != "/k" ||
		!c.UseProxies || c.SRV != "example.org" || c.SRVSuffix != "blue" || c.Protocol != "http" {
		t.Fatalf("decoded %#v", c)
	}
	// A certificate alone is fine: Patroni lets the key sit in the cert file.
	if _, err := ParseConfig([]byte(`{"hosts":"a","cert":"/both.pem"}`)); err != nil {
		t.Fatalf("cert without key: %v", err)
	}
	// Credentials from the URL, unless given as keys.
	c, err = ParseConfig([]byte(`{"url":"http://root:s3cret@etcd:2379"}`))
	if err != nil {
		t.Fatal(err)
	}
	if u, p := c.credentials(); u != "root" || p != "s3cret" || strings.Contains(c.static[0], "s3cret") {
		t.Fatalf("credentials %q %q, endpoint %s", u, p, c.static[0])
	}
	c, err = ParseConfig([]byte(`{"url":"http://root:s3cret@etcd:2379","username":"me","password":"mine"}`))
	if err != nil {
		t.Fatal(err)
	}
	if u, p := c.credentials(); u != "me" || p != "mine" {
		t.Fatalf("credentials %q %q", u, p)
	}
}

func TestParseConfigProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want []string
	}{
		{"not json", `{"hosts":`, []string{""}},
		{"not a table", `["a:1"]`, []string{""}},
		{"empty", `{}`, []string{""}},
		{"nothing", ``, []string{""}},
		{"unknown key", `{"hosts":["a:1"],"hostz":"b"}`, []string{"hostz"}},
		{"hosts wrong type", `{"hosts":2379}`, []string{"hosts"}},
		{"hosts item wrong type", `{"hosts":["a:1",2]}`, []string{"hosts[1]"}},
		{"hosts empty", `{"hosts":[]}`, []string{"hosts"}},
		{"hosts bad port", `{"hosts":["a:1","b:99999","c:x"]}`, []string{"hosts[1]", "hosts[2]"}},
		{"hosts URL", `{"hosts":["http://a:2379"]}`, []string{"hosts[0]"}},
		{"hosts no host", `{"hosts":[":2379"]}`, []string{"hosts[0]"}},
		{"host bad", `{"host":"a:b:c"}`, []string{"host"}},
		{"host wrong type", `{"host":["a"]}`, []string{"host"}},
		{"url scheme", `{"url":"ftp://a:1"}`, []string{"url"}},
		{"url path", `{"url":"http://a:1/v3"}`, []string{"url"}},
		{"url no host", `{"url":"http://:2379"}`, []string{"url"}},
		{"urls credentials", `{"urls":["http://u:p@a:1"]}`, []string{"urls[0]"}},
		{"proxy bad port", `{"proxy":"http://a:0"}`, []string{"proxy"}},
		{"protocol", `{"hosts":"a","protocol":"grpc"}`, []string{"protocol"}},
		{"protocol empty", `{"hosts":"a","protocol":""}`, []string{"protocol"}},
		{"port", `{"hosts":"a","port":"two"}`, []string{"port"}},
		{"port type", `{"hosts":"a","port":true}`, []string{"port"}},
		{"use_proxies", `{"hosts":"a","use_proxies":"maybe"}`, []string{"use_proxies"}},
		{"srv_suffix without srv", `{"hosts":"a","srv_suffix":"x"}`, []string{"srv_suffix"}},
		{"srv bad", `{"srv":"http://example.org"}`, []string{"srv"}},
		{"username without password", `{"hosts":"a","username":"u"}`, []string{"password"}},
		{"password without username", `{"hosts":"a","password":"p"}`, []string{"username"}},
		{"key without cert", `{"hosts":"a","key":"/k.pem"}`, []string{"cert"}},
		{"every problem at once", `{"hosts":["a:0"],"protocol":"x","username":"u","bogus":1,"cacert":7}`,
			[]string{"bogus", "cacert", "hosts[0]", "password", "protocol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			if got := problemPaths(t, err); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problems at %q, want %q (%v)", got, tc.want, err)
			}
			if err := New(nil).Validate(context.Background(), []byte(tc.json)); err == nil {
				t.Fatal("Validate accepted it")
			}
		})
	}
}

func TestConfigRedactsPassword(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hosts":"a","username":"u","password":"hunter2","url":"http://x:hunter3@b:1"}`))
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", c), string(js)} {
		if strings.Contains(out, "hunter") {
			t.Errorf("password printed: %s", out)
		}
	}
}

func TestValidateDoesNotConnect(t *testing.T) {
	start := time.Now()
	// A name that cannot resolve and a blackhole address: both would hang or
	// fail if Validate touched the network.
	if err := New(nil).Validate(context.Background(), []byte(`{"hosts":["etcd.invalid:2379","192.0.2.1:2379"],"srv":"example.invalid"}`)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Validate took %v", d)
	}
}

func fakeSRV(records map[string][]*net.SRV) srvLookup {
	return func(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
		if service != "" || proto != "" {
			return "", nil, fmt.Errorf("unexpected service %q proto %q", service, proto)
		}
		if r, ok := records[name]; ok {
			return name, r, nil
		}
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
}

func TestSRVEndpoints(t *testing.T) {
	dns := fakeSRV(map[string][]*net.SRV{
		"_etcd-client-ssl-blue._tcp.example.org": {{Target: "e1.example.org.", Port: 2379}, {Target: "e2.example.org.", Port: 2379}},
		"_etcd-client._tcp.example.org":          {{Target: "e3.example.org.", Port: 2379}},
		"_etcd._tcp.other.org":                   {{Target: "e4.other.org.", Port: 4001}},
	})
	for _, tc := range []struct {
		json string
		want []string
	}{
		{`{"srv":"example.org","srv_suffix":"blue"}`, []string{"https://e1.example.org:2379", "https://e2.example.org:2379"}},
		{`{"srv":"example.org"}`, []string{"http://e3.example.org:2379"}},
		{`{"srv":"other.org"}`, []string{"http://e4.other.org:4001"}},
		{`{"srv":"none.org","hosts":"fallback:1"}`, []string{"http://fallback:1"}},
		{`{"srv":"example.org","proxy":"http://p:1"}`, []string{"http://p:1"}},
	} {
		c, err := ParseConfig([]byte(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := c.endpoints(context.Background(), dns)
		if err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: endpoints %v, want %v", tc.json, got, tc.want)
		}
	}
	c, err := ParseConfig([]byte(`{"srv":"none.org"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.endpoints(context.Background(), dns); err == nil {
		t.Fatal("no SRV records and no fallback: want an error")
	}
}

// writeCert writes a self-signed certificate and its key, separately and
// in one combined file.
func writeCert(t *testing.T) (certFile, keyFile, both string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "custos-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	certFile, keyFile, both = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "both.pem")
	for f, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, both: append(append([]byte{}, certPEM...), keyPEM...)} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, both
}

func TestTLSConfig(t *testing.T) {
	cert, key, both := writeCert(t)
	tlsOf := func(js string) (*Config, error) {
		t.Helper()
		c, err := ParseConfig([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		eps, _, err := c.endpoints(context.Background(), fakeSRV(nil))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := c.tlsConfig(eps)
		if err != nil {
			return nil, err
		}
		if cfg == nil {
			return nil, nil
		}
		return c, nil
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	if c, err := tlsOf(`{"hosts":"a","cacert":` + q(cert) + `}`); err != nil || c != nil {
		t.Fatalf("http endpoints: want no TLS, got %v %v", c, err)
	}
	for _, js := range []string{
		`{"hosts":"a","protocol":"https","cacert":` + q(cert) + `,"cert":` + q(cert) + `,"key":` + q(key) + `}`,
		`{"url":"https://a","cert":` + q(both) + `}`,
		`{"url":"https://a"}`,
	} {
		if _, err := tlsOf(js); err != nil {
			t.Errorf("%s: %v", js, err)
		}
	}
	for _, tc := range []struct {
		json string
		want []string
	}{
		{`{"url":"https://a","cacert":"/does/not/exist"}`, []string{"cacert"}},
		{`{"url":"https://a","cacert":` + q(key) + `}`, []string{"cacert"}},
		{`{"url":"https://a","cert":` + q(cert) + `}`, []string{"key"}},
		{`{"url":"https://a","cert":` + q(cert) + `,"key":` + q(cert) + `}`, []string{"cert"}},
	} {
		_, err := tlsOf(tc.json)
		if got := problemPaths(t, err); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: problems at %q, want %q (%v)", tc.json, got, tc.want, err)
		}
	}
}
