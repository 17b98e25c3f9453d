package zookeeper

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/section"
)

func TestParseConfigAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want Config
	}{
		{
			name: "list",
			json: `{"hosts": ["zk1:2181", "10.0.0.2:2182", "[::1]:2183"]}`,
			want: Config{Hosts: []string{"zk1:2181", "10.0.0.2:2182", "[::1]:2183"}, Verify: true},
		},
		{
			name: "comma string, default port",
			json: `{"hosts": "zk1, zk2:2888,[fe80::1]"}`,
			want: Config{Hosts: []string{"zk1:2181", "zk2:2888", "[fe80::1]:2181"}, Verify: true},
		},
		{
			name: "tls, acls and auth",
			json: `{"hosts": ["zk1:2281"], "use_ssl": true, "verify": false, "cacert": "/ca.pem",
				"cert": "/c.pem", "key": "/k.pem", "key_password": "pw",
				"set_acls": {"CN=custos": ["read", "WRITE", "Create", "DELETE"], "CN=admin": ["ALL"]},
				"auth_data": {"digest": "user:secret"}}`,
			want: Config{
				Hosts: []string{"zk1:2281"}, UseSSL: true, Verify: false,
				TLS: section.TLS{CACert: "/ca.pem", Cert: "/c.pem", Key: "/k.pem", KeyPassword: "pw"},
				ACL: []zk.ACL{
					{Perms: zk.PermAll, Scheme: "x509", ID: "CN=admin"},
					{Perms: zk.PermRead | zk.PermWrite | zk.PermCreate | zk.PermDelete, Scheme: "x509", ID: "CN=custos"},
				},
				Auth: []Credential{{Scheme: "digest", Secret: "user:secret"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig([]byte(tc.json))
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestParseConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		// want lists "path: message fragment" for every expected problem.
		want []string
	}{
		{"empty section", ``, []string{"hosts: is required"}},
		{"not an object", `[1]`, []string{": must be a table of keys, got a list"}},
		{"unknown key", `{"hosts": "zk1", "hostz": "zk2", "port": 1}`, []string{"hostz: unknown key", "port: unknown key"}},
		{"hosts type", `{"hosts": 2181}`, []string{"hosts: must be a list of host:port or a comma-separated string, got a number"}},
		{"no hosts", `{"hosts": []}`, []string{"hosts: names no server"}},
		{"blank hosts", `{"hosts": " , "}`, []string{"hosts: names no server"}},
		{"bad entries", `{"hosts": ["zk1:0", "zk2:http", ":2181", "::1:2181", "zk3:2181", ""]}`, []string{
			`hosts[0]: "zk1:0": port "0" is not a number`,
			`hosts[1]: "zk2:http": port "http" is not a number`,
			`hosts[2]: ":2181": the host is missing`,
			`hosts[3]: "::1:2181": not host:port`,
			`hosts[5]: "": empty server address`,
		}},
		{"bad entry in string", `{"hosts": "zk1:2181,zk2:99999"}`, []string{`hosts: "zk2:99999": port "99999" is not a number`}},
		{"chroot", `{"hosts": "zk1:2181,zk2:2181/patroni"}`, []string{`hosts: "zk2:2181/patroni": a chroot path`}},
		{"types", `{"hosts": "zk1", "use_ssl": "maybe", "verify": 1, "cacert": true}`, []string{
			`use_ssl: must be true or false, got a string "maybe"`,
			"verify: must be true or false, got a number",
			"cacert: must be a string, got a boolean",
		}},
		{"tls without use_ssl", `{"hosts": "zk1", "cacert": "/ca", "cert": "/c", "key": "/k", "verify": true}`, []string{
			"cacert: has no effect unless use_ssl is true",
			"cert: has no effect unless use_ssl is true",
			"key: has no effect unless use_ssl is true",
			"verify: has no effect unless use_ssl is true",
		}},
		{"half a key pair", `{"hosts": "zk1", "use_ssl": true, "cert": "/c", "key_password": "x"}`, []string{
			"key: is required with cert",
			"key_password: needs key",
		}},
		{"acls", `{"hosts": "zk1", "set_acls": {"CN=a": ["READ", "SUPER"], "CN=b": [], "CN=c": "ALL"}}`, []string{
			`set_acls.CN=a: unknown permission "SUPER"`,
			"set_acls.CN=b: lists no permission",
			"set_acls.CN=c: must be a list of permissions, got a string",
		}},
		{"acls type", `{"hosts": "zk1", "set_acls": ["READ"]}`, []string{"set_acls: must be a table"}},
		{"auth", `{"hosts": "zk1", "auth_data": {"sasl": "u:p", "digest": 5, "ip": ""}}`, []string{
			"auth_data.digest: must be a string, got a number",
			"auth_data.ip: the credential is empty",
			"auth_data.sasl: SASL",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.json))
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want a *sdk.ConfigError, got %v", err)
			}
			var got []string
			for _, p := range ce.Problems {
				got = append(got, p.Path+": "+p.Message)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d is %q, want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}

func TestSecretsDoNotPrint(t *testing.T) {
	cfg, err := parseConfig([]byte(`{"hosts": "zk1", "use_ssl": true, "cert": "/c", "key": "/k",
		"key_password": "hunter2", "auth_data": {"digest": "user:swordfish"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, *cfg)
		if strings.Contains(out, "hunter2") || strings.Contains(out, "swordfish") {
			t.Errorf("%s prints a secret: %s", format, out)
		}
	}
}

func TestValidZnodePath(t *testing.T) {
	for p, want := range map[string]bool{
		"/service/demo":            true,
		"/service/demo/members/pg": true,
		"/service/dé-mo_1.2":       true,
		"/":                        false,
		"service/demo":             false,
		"/service/demo/":           false,
		"/service//demo":           false,
		"/service/./demo":          false,
		"/service/../demo":         false,
		"/service/de\x00mo":        false,
		"/service/de\x1fmo":        false,
	} {
		if got := validZnodePath(p); got != want {
			t.Errorf("validZnodePath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestConfigureRejectsBadBinding(t *testing.T) {
	b := New(nil)
	defer b.Close(context.Background())
	err := b.Configure(context.Background(), dcs.ConfigureRequest{
		Scope: "demo/..", Member: "pg/1", TTL: 0, Config: []byte(`{"hosts": "127.0.0.1:1"}`),
	})
	var ce *sdk.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *sdk.ConfigError, got %v", err)
	}
	var paths []string
	for _, p := range ce.Problems {
		paths = append(paths, p.Path)
	}
	if want := []string{"scope", "name", "ttl"}; !reflect.DeepEqual(paths, want) {
		t.Fatalf("problems at %v, want %v: %v", paths, want, err)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestUnreachable checks that an ensemble nobody answers for gives
// ErrUnavailable within the retry timeout, that the caller's cancellation
// wins, and that Close still returns promptly.
func TestUnreachable(t *testing.T) {
	b := New(nil)
	const retry = 300 * time.Millisecond
	start := time.Now()
	err := b.Configure(context.Background(), dcs.ConfigureRequest{
		Scope: "demo", Member: "pg1", TTL: 3 * time.Second, RetryTimeout: retry,
		Config: []byte(fmt.Sprintf(`{"hosts": [%q]}`, deadAddr(t))),
	})
	if !errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("Configure: want ErrUnavailable, got %v", err)
	}
	if took := time.Since(start); took > retry+time.Second {
		t.Fatalf("Configure took %v with retry_timeout %v", took, retry)
	}
	calls := map[string]func(ctx context.Context) error{
		"GetCluster":    func(ctx context.Context) error { _, err := b.GetCluster(ctx); return err },
		"AcquireLeader": func(ctx context.Context) error { _, err := b.AcquireLeader(ctx); return err },
		"RenewLeader":   b.RenewLeader,
		"TouchMember":   func(ctx context.Context) error { return b.TouchMember(ctx, []byte(`{}`)) },
		"Set":           func(ctx context.Context) error { return b.Set(ctx, dcs.KeyStatus, []byte(`{}`)) },
		"Watch":         func(ctx context.Context) error { return b.Watch(ctx, func(dcs.Event) {}) },
	}
	for name, call := range calls {
		start := time.Now()
		if err := call(context.Background()); !errors.Is(err, dcs.ErrUnavailable) {
			t.Errorf("%s: want ErrUnavailable, got %v", name, err)
		}
		if took := time.Since(start); took > retry+time.Second {
			t.Errorf("%s took %v with retry_timeout %v", name, took, retry)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond) // let the call start
		cancel()
	}()
	start = time.Now()
	if _, err := b.GetCluster(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("GetCluster with a cancelled context: want context.Canceled, got %v", err)
	}
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Errorf("GetCluster returned %v after its context was cancelled", took)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := b.Watch(ctx, func(dcs.Event) {}); err != nil {
		t.Errorf("Watch with a cancelled context: want nil, got %v", err)
	}
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	if err := b.Close(closeCtx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.GetCluster(context.Background()); !errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("GetCluster after Close: want ErrUnavailable, got %v", err)
	}
}

// writeTestCert writes a self-signed certificate and its key (encrypted
// the legacy way when password is set) and returns their paths.
func writeTestCert(t *testing.T, password string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "custos"},
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
	block := &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}
	if password != "" {
		block, err = x509.EncryptPEMBlock(rand.Reader, block.Type, keyDER, []byte(password), x509.PEMCipherAES256) // deprecated in Go, but the legacy format is what is tested
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestTLSConfig(t *testing.T) {
	certPath, keyPath := writeTestCert(t, "")
	encCert, encKey := writeTestCert(t, "s3cret")
	pkcs8 := filepath.Join(t.TempDir(), "pkcs8.pem")
	if err := os.WriteFile(pkcs8, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), 0o600); err != nil {
		t.Fatal(err)
	}

	ok := []*Config{
		{UseSSL: true, Verify: true, TLS: section.TLS{CACert: certPath, Cert: certPath, Key: keyPath}},
		{UseSSL: true, Verify: false, TLS: section.TLS{Cert: encCert, Key: encKey, KeyPassword: "s3cret"}},
	}
	for i, cfg := range ok {
		tc, err := cfg.tlsConfig()
		if err != nil {
			t.Fatalf("config %d: %v", i, err)
		}
		if len(tc.Certificates) != 1 || tc.InsecureSkipVerify == cfg.Verify {
			t.Fatalf("config %d: got %d certificates, InsecureSkipVerify %v", i, len(tc.Certificates), tc.InsecureSkipVerify)
		}
	}
	if tc, err := (&Config{}).tlsConfig(); tc != nil || err != nil {
		t.Fatalf("without use_ssl: got %v, %v", tc, err)
	}

	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{UseSSL: true, TLS: section.TLS{CACert: filepath.Join(t.TempDir(), "missing.pem")}}, "cacert: "},
		{Config{UseSSL: true, TLS: section.TLS{CACert: keyPath}}, "cacert: "},
		{Config{UseSSL: true, TLS: section.TLS{Cert: certPath, Key: encKey}}, "key_password: "},
		{Config{UseSSL: true, TLS: section.TLS{Cert: encCert, Key: encKey, KeyPassword: "wrong"}}, "key_password: "},
		{Config{UseSSL: true, TLS: section.TLS{Cert: certPath, Key: keyPath, KeyPassword: "x"}}, "key_password: "},
		{Config{UseSSL: true, TLS: section.TLS{Cert: certPath, Key: pkcs8, KeyPassword: "x"}}, "key: "},
		{Config{UseSSL: true, TLS: section.TLS{Cert: keyPath, Key: keyPath}}, "cert: "},
	} {
		_, err := tc.cfg.tlsConfig()
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || len(ce.Problems) != 1 {
			t.Errorf("%+v: want one config problem, got %v", tc.cfg, err)
			continue
		}
		if got := ce.Problems[0].Path + ": " + ce.Problems[0].Message; !strings.HasPrefix(got, tc.want) {
			t.Errorf("%+v: problem %q, want it at %q", tc.cfg, got, tc.want)
		}
	}
}

func TestHostRing(t *testing.T) {
	h := &hostRing{}
	if err := h.Init([]string{"a:1", "b:2"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	first, retry := h.Next()
	seen[first] = true
	if retry {
		t.Fatal("first Next says retryStart")
	}
	second, retry := h.Next()
	seen[second] = true
	if retry || len(seen) != 2 {
		t.Fatalf("second Next: %s retry=%v", second, retry)
	}
	if again, retry := h.Next(); again != first || !retry {
		t.Fatalf("third Next: %s retry=%v, want %s and a retry start", again, retry, first)
	}
	h.Connected()
	if next, retry := h.Next(); next != second || retry {
		t.Fatalf("after Connected: %s retry=%v", next, retry)
	}
}
