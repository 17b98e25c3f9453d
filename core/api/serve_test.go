package api

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/testkit/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ioTimeout bounds every network read and write of these tests.
const ioTimeout = 5 * time.Second

// serve runs s on a free loopback port until the test ends and returns its
// address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel", err)
			}
		case <-time.After(ShutdownTimeout + ioTimeout):
			t.Error("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

// raw sends request bytes over a fresh TCP connection and returns
// everything the server sends until it closes the connection.
func raw(t *testing.T, addr, request string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the answer to %q (the server must close the connection): %v; got %q", request, err, got)
	}
	return string(got)
}

const (
	bareOK          = "HTTP/1.0 200 OK\r\n\r\n"
	bareUnavailable = "HTTP/1.0 503 Service Unavailable\r\n\r\n"
)

func TestBareStatusLines(t *testing.T) {
	primary := serve(t, newTestServer(primarySnapshot(t), ServerConfig{HTTPExtraHeaders: map[string]string{"X-Extra": "1"}}))
	replica := serve(t, newTestServer(replicaSnapshot(t), ServerConfig{}))
	cases := []struct {
		addr, request, want string
	}{
		// HAProxy's httpchk: HTTP/1.0 without a Host header.
		{primary, "OPTIONS /primary HTTP/1.0\r\n\r\n", bareOK},
		{primary, "OPTIONS /master HTTP/1.0\r\n\r\n", bareOK},
		{primary, "HEAD /primary HTTP/1.0\r\n\r\n", bareOK},
		{primary, "HEAD / HTTP/1.0\r\n\r\n", bareOK},
		{primary, "OPTIONS /replica HTTP/1.0\r\n\r\n", bareUnavailable},
		{replica, "OPTIONS /primary HTTP/1.0\r\n\r\n", bareUnavailable},
		{replica, "OPTIONS /replica HTTP/1.0\r\n\r\n", bareOK},
		{replica, "HEAD /replica?lag=100 HTTP/1.0\r\n\r\n", bareUnavailable},
		{replica, "HEAD /replica?lag=1MB HTTP/1.0\r\n\r\n", bareOK},
		// HTTP/1.1 with keep-alive asked for: still one status line, then
		// the connection closes.
		{primary, "OPTIONS /primary HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", bareOK},
		{primary, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", bareUnavailable},
		// Paths with GET handlers are health checks for HEAD/OPTIONS, as in
		// Patroni (do_HEAD_patroni does not exist): 503.
		{primary, "HEAD /patroni HTTP/1.0\r\n\r\n", bareUnavailable},
		// /liveness and /readiness answer with a bare line on GET too.
		{primary, "GET /liveness HTTP/1.0\r\n\r\n", bareOK},
		{primary, "GET /readiness HTTP/1.1\r\nHost: x\r\n\r\n", bareOK},
		{replica, "GET /readiness?lag=100 HTTP/1.0\r\n\r\n", bareUnavailable},
	}
	for _, c := range cases {
		if got := raw(t, c.addr, c.request); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.request, got, c.want)
		}
	}
}

func TestNormalResponseOverTCP(t *testing.T) {
	addr := serve(t, newTestServer(primarySnapshot(t), ServerConfig{}))
	resp, err := (&http.Client{Timeout: ioTimeout}).Get("http://" + addr + "/primary")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), `{"state":"running"`) {
		t.Errorf("GET /primary = %d %.60s", resp.StatusCode, body)
	}
	// A Go client reads the bare lines as responses too (kubelet probes).
	for path, want := range map[string]int{"/liveness": 200, "/readiness?lag=0": 200} {
		resp, err := (&http.Client{Timeout: ioTimeout}).Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d", path, resp.StatusCode)
		}
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newTestServer(primarySnapshot(t), ServerConfig{}).Serve(ctx, ln) }()
	if got := raw(t, ln.Addr().String(), "HEAD /primary HTTP/1.0\r\n\r\n"); got != bareOK {
		t.Fatalf("before cancel: %q", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(ShutdownTimeout + ioTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	if conn, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		_ = conn.Close()
		t.Error("the listener still accepts after shutdown")
	}
}

func TestListenAndServeBadAddress(t *testing.T) {
	s := newTestServer(primarySnapshot(t), ServerConfig{})
	err := s.ListenAndServe(context.Background(), "no-port")
	if err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Errorf("ListenAndServe(no-port) = %v", err)
	}
	// A port in use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	if err := s.ListenAndServe(context.Background(), ln.Addr().String()); err == nil {
		t.Error("ListenAndServe on a busy port succeeded")
	}
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir.
type testPKI struct {
	caFile, certFile, keyFile, clientCert, clientKey string
	pool                                             *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "custos test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		return certFile, keyFile
	}
	p.certFile, p.keyFile = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tlsClient(p testPKI, withCert bool) *http.Client {
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
		if err != nil {
			panic(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: ioTimeout, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func TestTLS(t *testing.T) {
	p := newTestPKI(t)
	for _, c := range []struct {
		verify               string
		getWithout           bool // a GET without a client certificate succeeds
		postWithout          int
		postWith, postNoAuth int
	}{
		{VerifyClientNone, true, http.StatusAccepted, http.StatusAccepted, http.StatusUnauthorized},
		{VerifyClientOptional, true, http.StatusForbidden, http.StatusAccepted, http.StatusUnauthorized},
		{VerifyClientRequired, false, 0, http.StatusAccepted, http.StatusUnauthorized},
	} {
		t.Run(c.verify, func(t *testing.T) {
			s := newTestServer(primarySnapshot(t), ServerConfig{
				CertFile: p.certFile, KeyFile: p.keyFile, CAFile: p.caFile, VerifyClient: c.verify,
				Username: "admin", Password: "pw",
				HTTPSExtraHeaders: map[string]string{"Strict-Transport-Security": "max-age=1"},
			})
			withUnsafeRoute(s)
			base := "https://" + serve(t, s)
			without, with := tlsClient(p, false), tlsClient(p, true)
			defer without.CloseIdleConnections()
			defer with.CloseIdleConnections()

			resp, err := without.Get(base + "/primary")
			if c.getWithout {
				if err != nil {
					t.Fatalf("GET without a client certificate: %v", err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") != "max-age=1" {
					t.Errorf("GET /primary over TLS = %d, headers %v", resp.StatusCode, resp.Header)
				}
			} else if err == nil {
				_ = resp.Body.Close()
				t.Errorf("GET without a client certificate succeeded with verify_client %s", c.verify)
			}

			post := func(client *http.Client, auth bool) int {
				req, _ := http.NewRequest(http.MethodPost, base+"/probe", nil)
				if auth {
					req.SetBasicAuth("admin", "pw")
				}
				resp, err := client.Do(req)
				if err != nil {
					return 0
				}
				_ = resp.Body.Close()
				return resp.StatusCode
			}
			if got := post(without, true); got != c.postWithout {
				t.Errorf("POST without a client certificate = %d, want %d", got, c.postWithout)
			}
			if got := post(with, true); got != c.postWith {
				t.Errorf("POST with a client certificate = %d, want %d", got, c.postWith)
			}
			if got := post(with, false); got != c.postNoAuth {
				t.Errorf("POST with a certificate but no auth = %d, want %d", got, c.postNoAuth)
			}
		})
	}
}

// HEAD over TLS still gets the bare status line.
func TestTLSBareStatusLine(t *testing.T) {
	p := newTestPKI(t)
	addr := serve(t, newTestServer(primarySnapshot(t), ServerConfig{CertFile: p.certFile, KeyFile: p.keyFile}))
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(conn, "OPTIONS /primary HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if string(got) != bareOK {
		t.Errorf("OPTIONS over TLS: %q", got)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	p := newTestPKI(t)
	for name, cfg := range map[string]ServerConfig{
		"missing cert":          {CertFile: filepath.Join(t.TempDir(), "nope.pem"), KeyFile: p.keyFile},
		"key of another cert":   {CertFile: p.certFile, KeyFile: p.clientKey},
		"bad verify_client":     {CertFile: p.certFile, KeyFile: p.keyFile, VerifyClient: "sometimes"},
		"verify without cafile": {CertFile: p.certFile, KeyFile: p.keyFile, VerifyClient: VerifyClientRequired},
		"cafile not PEM":        {CertFile: p.certFile, KeyFile: p.keyFile, CAFile: p.keyFile + ".missing"},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = newTestServer(primarySnapshot(t), cfg).Serve(context.Background(), ln)
		if err == nil {
			t.Errorf("%s: Serve succeeded", name)
		} else if !strings.Contains(err.Error(), ln.Addr().String()) {
			t.Errorf("%s: error does not name the address: %v", name, err)
		}
	}
}

// The certificate is re-read when its files change.
func TestCertificateRotation(t *testing.T) {
	p := newTestPKI(t)
	q := newTestPKI(t) // a second CA and server certificate
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	copyFile(t, p.certFile, cert)
	copyFile(t, p.keyFile, key)
	addr := serve(t, newTestServer(primarySnapshot(t), ServerConfig{CertFile: cert, KeyFile: key}))

	served := func() string {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		return string(conn.ConnectionState().PeerCertificates[0].Raw)
	}
	before := served()
	copyFile(t, q.certFile, cert)
	copyFile(t, q.keyFile, key)
	// Make the change visible to a modification-time check on coarse
	// file systems.
	future := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(cert, future, future)
	_ = os.Chtimes(key, future, future)
	poll.Eventually(t, ioTimeout, "the new certificate served", func() bool { return served() != before })
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
