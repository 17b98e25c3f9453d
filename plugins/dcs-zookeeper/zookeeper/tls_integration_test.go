//go:build integration

package zookeeper

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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/section"
	"github.com/custos-ha/custos/testkit/servers"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string // PEM of the CA certificate
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, path: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.path, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca
}

// issue signs a leaf certificate; it returns the certificate PEM block and
// the key.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (*pem.Block, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "CERTIFICATE", Bytes: der}, key
}

func writePEM(t *testing.T, path string, blocks ...*pem.Block) {
	t.Helper()
	var out []byte
	for _, b := range blocks {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLSAndAuth runs a TLS-enabled server of its own and checks use_ssl,
// cacert, verify, a client certificate with a legacy-encrypted key, the
// x509 ACLs of set_acls, and digest credentials from auth_data.
func TestTLSAndAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	otherCA := newTestCA(t, dir, "other-ca")

	serverCert, serverKey := ca.issue(t, "localhost", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	serverKeyDER, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPair := filepath.Join(dir, "server.pem")
	writePEM(t, keyPair, &pem.Block{Type: "PRIVATE KEY", Bytes: serverKeyDER}, serverCert)

	clientCert, clientKey := ca.issue(t, "custos-client", x509.ExtKeyUsageClientAuth, nil, nil)
	clientKeyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	encrypted, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", clientKeyDER, []byte("s3cret"), x509.PEMCipherAES256) // deprecated in Go, but the legacy format is what key_password is for
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	writePEM(t, certPath, clientCert)
	writePEM(t, keyPath, encrypted)

	srv, err := servers.StartZooKeeper(servers.ZooKeeperConfig{Dir: dir, TLS: &servers.ZooKeeperTLS{KeyPair: keyPair, CA: ca.path}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	_, securePort, _ := net.SplitHostPort(srv.SecureAddr)

	configJSON := func(m map[string]any) []byte {
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// A cold JVM takes a while over its first TLS handshakes.
	const retry = 5 * time.Second
	bindWithin := func(t *testing.T, scope string, cfg []byte, retry time.Duration) (*Backend, error) {
		b := New(testLogger(t.Name()))
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		return b, b.Configure(ctxT(t), dcs.ConfigureRequest{
			Scope: scope, Member: "pg1", TTL: testTTL, RetryTimeout: retry, Config: cfg,
		})
	}
	bind := func(t *testing.T, scope string, cfg []byte) (*Backend, error) {
		return bindWithin(t, scope, cfg, retry)
	}
	use := func(t *testing.T, b *Backend) {
		t.Helper()
		if _, err := b.AcquireLeader(ctxT(t)); err != nil {
			t.Fatalf("AcquireLeader: %v", err)
		}
		c, err := b.GetCluster(ctxT(t))
		if err != nil {
			t.Fatalf("GetCluster: %v", err)
		}
		if c.Leader == nil || c.Leader.Name != "pg1" {
			t.Fatalf("leader reads %+v", c.Leader)
		}
	}

	t.Run("VerifiedByName", func(t *testing.T) {
		b, err := bind(t, randomScope(t, "tls"), configJSON(map[string]any{
			"hosts": "localhost:" + securePort, "use_ssl": true, "cacert": ca.path,
		}))
		if err != nil {
			t.Fatal(err)
		}
		use(t, b)
	})
	t.Run("VerifiedByAddressWithClientCert", func(t *testing.T) {
		b, err := bind(t, randomScope(t, "tls"), configJSON(map[string]any{
			"hosts": []string{srv.SecureAddr}, "use_ssl": true, "cacert": ca.path,
			"cert": certPath, "key": keyPath, "key_password": "s3cret",
		}))
		if err != nil {
			t.Fatal(err)
		}
		use(t, b)
	})
	t.Run("UnverifiedWithoutCA", func(t *testing.T) {
		b, err := bind(t, randomScope(t, "tls"), configJSON(map[string]any{
			"hosts": []string{srv.SecureAddr}, "use_ssl": true, "verify": false,
		}))
		if err != nil {
			t.Fatal(err)
		}
		use(t, b)
	})
	t.Run("WrongCA", func(t *testing.T) {
		_, err := bindWithin(t, randomScope(t, "tls"), configJSON(map[string]any{
			"hosts": []string{srv.SecureAddr}, "use_ssl": true, "cacert": otherCA.path,
		}), time.Second)
		if !errors.Is(err, dcs.ErrUnavailable) {
			t.Fatalf("a server certificate from another CA: want ErrUnavailable, got %v", err)
		}
	})
	t.Run("X509ACL", func(t *testing.T) {
		scope := randomScope(t, "acl")
		b, err := bind(t, scope, configJSON(map[string]any{
			"hosts": []string{srv.SecureAddr}, "use_ssl": true, "cacert": ca.path,
			"cert": certPath, "key": keyPath, "key_password": "s3cret",
			"set_acls": map[string][]string{"CN=custos-client": {"ALL"}},
		}))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Set(ctxT(t), dcs.KeyConfig, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		path := "/service/" + scope + "/config"
		if _, _, err := rawConnTo(t, srv.Addr).Get(path); !errors.Is(err, zk.ErrNoAuth) {
			t.Fatalf("a client without the certificate read config: %v", err)
		}
		// A client with the certificate sees the ACL.
		tlsConf, err := (&Config{UseSSL: true, Verify: true, TLS: section.TLS{CACert: ca.path, Cert: certPath, Key: keyPath, KeyPassword: "s3cret"}}).tlsConfig()
		if err != nil {
			t.Fatal(err)
		}
		acl, _, err := rawConnTo(t, srv.SecureAddr, zk.WithDialer(dialer(tlsConf))).GetACL(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(acl) != 1 || acl[0].Scheme != "x509" || acl[0].ID != "CN=custos-client" || acl[0].Perms != zk.PermAll {
			t.Fatalf("config ACL %+v", acl)
		}
		c, err := b.GetCluster(ctxT(t))
		if err != nil || c.Config == nil {
			t.Fatalf("the certificate's owner cannot read config: %+v, %v", c, err)
		}
	})
	t.Run("DigestAuth", func(t *testing.T) {
		scope := randomScope(t, "digest")
		raw := rawConnTo(t, srv.Addr)
		if _, err := raw.Create("/service", nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatal(err)
		}
		// Only custos:pw may use the cluster's znode.
		if _, err := raw.Create("/service/"+scope, nil, 0, zk.DigestACL(zk.PermAll, "custos", "pw")); err != nil {
			t.Fatal(err)
		}
		with, err := bind(t, scope, configJSON(map[string]any{
			"hosts": []string{srv.Addr}, "auth_data": map[string]string{"digest": "custos:pw"},
		}))
		if err != nil {
			t.Fatal(err)
		}
		use(t, with)
		without, err := bind(t, scope, configJSON(map[string]any{"hosts": []string{srv.Addr}}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := without.GetCluster(ctxT(t)); err == nil || !strings.Contains(err.Error(), "not authenticated") {
			t.Fatalf("reading without credentials: want a not-authenticated error, got %v", err)
		}
	})
}

// rawConnTo is rawConn for another server, with a TLS dialer when given.
func rawConnTo(t *testing.T, addr string, dial ...func(*zk.Conn)) *zk.Conn {
	t.Helper()
	opts := []func(*zk.Conn){zk.WithLogger(zkLogger{testLogger("raw")}), zk.WithLogInfo(false)}
	opts = append(opts, dial...)
	conn, events, err := zk.Connect([]string{addr}, 10*time.Second, func(c *zk.Conn) {
		for _, o := range opts {
			o(c)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		for range events {
		}
	})
	deadline := time.After(10 * time.Second)
	for conn.State() != zk.StateHasSession {
		select {
		case <-events:
		case <-deadline:
			t.Fatal("raw zookeeper connection did not get a session")
		}
	}
	return conn
}
