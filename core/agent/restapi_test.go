package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A REST API that cannot start stops the agent at once, exit status 1, with
// the key to fix and its file line, before it starts a plugin, touches the
// data directory or PostgreSQL.
func TestRESTAPIThatCannotStartStopsTheAgent(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t, dir)
	// A port that was free a moment ago: the agent stops before it would
	// listen on it in every case but the last.
	free := freePort(t)
	cases := []struct {
		name, restapi, want string
	}{
		{"bad certificate", fmt.Sprintf("listen = %q\ncertfile = %q\nkeyfile = %q", free, garbage, key),
			"custos.toml:8: restapi.certfile: " + garbage},
		{"bad key", fmt.Sprintf("listen = %q\ncertfile = %q\nkeyfile = %q", free, cert, garbage),
			"custos.toml:9: restapi.keyfile: " + garbage + " holds no PEM private key"},
		{"missing cafile", fmt.Sprintf("listen = %q\ncertfile = %q\nkeyfile = %q\ncafile = %q\nverify_client = \"required\"",
			free, cert, key, filepath.Join(dir, "no-ca.pem")),
			"custos.toml:10: restapi.cafile: open " + filepath.Join(dir, "no-ca.pem")},
		{"allowlist host that does not resolve", fmt.Sprintf("listen = %q\nallowlist = [\"10.0.0.0/8\", \"no-such-host.invalid\"]", free),
			"custos.toml:8: restapi.allowlist: resolving no-such-host.invalid"},
		{"listen address in use", fmt.Sprintf("listen = %q", busy.Addr().String()),
			"custos.toml:7: restapi.listen: " + busy.Addr().String() + " is in use"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, dataDir := writeAgentConfig(t, c.restapi)
			var stdout, stderr bytes.Buffer
			code := Main([]string{path}, &stdout, &stderr)
			out := stderr.String()
			if code != exitFailure {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailure, out)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, out)
			}
			if strings.Contains(out, "plugin") {
				t.Errorf("the agent got as far as its plugins:\n%s", out)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("the data directory exists: %v", err)
			}
		})
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// selfSigned writes a self-signed certificate and its key into dir.
func selfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "rest.crt"), filepath.Join(dir, "rest.key")
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// writeAgentConfig writes a configuration whose [restapi] section is
// restapi (its first key on line 7), with PostgreSQL programs that are
// empty scripts: the agent must stop before it runs any. It returns the
// file and the data directory.
func writeAgentConfig(t *testing.T, restapi string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range programsRun {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\nexit 99\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	src := fmt.Sprintf(`scope = "demo"
name = "node1"
plugin_dir = %q

[restapi]
connect_address = "127.0.0.1:8008"
%s

[dcs.etcd3]
hosts = ["127.0.0.1:1"]

[postgresql]
listen = "127.0.0.1:5432"
connect_address = "127.0.0.1:5432"
data_dir = %q
bin_dir = %q

[postgresql.authentication.superuser]
username = "postgres"
password = "secret"

[postgresql.authentication.replication]
username = "replicator"
password = "rep-secret"
`, plugins, restapi, dataDir, bin)
	path := filepath.Join(dir, "custos.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dataDir
}
