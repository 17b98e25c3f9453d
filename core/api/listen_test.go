package api

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// encryptKey writes the PEM key file keyFile again with legacy PEM
// encryption under password and returns the new file.
func encryptKey(t *testing.T, keyFile, password string) string {
	t.Helper()
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	enc, err := x509.EncryptPEMBlock(rand.Reader, block.Type, block.Bytes, []byte(password), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "encrypted.key")
	if err := os.WriteFile(out, pem.EncodeToMemory(enc), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// A key with legacy PEM encryption loads with restapi.keyfile_password and
// the server serves HTTPS with it.
func TestEncryptedKeyFile(t *testing.T) {
	p := newTestPKI(t)
	keyFile := encryptKey(t, p.keyFile, "k3y pass")
	addr := serve(t, newTestServer(primarySnapshot(t), ServerConfig{CertFile: p.certFile, KeyFile: keyFile, KeyFilePassword: "k3y pass"}))
	client := tlsClient(p, false)
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/primary")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /primary with an encrypted key = %d", resp.StatusCode)
	}

	// The certificate and the encrypted key in one file work too.
	both := filepath.Join(t.TempDir(), "both.pem")
	certPEM, _ := os.ReadFile(p.certFile)
	keyPEM, _ := os.ReadFile(keyFile)
	if err := os.WriteFile(both, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyPair("restapi", both, "", "k3y pass"); err != nil {
		t.Errorf("certificate and encrypted key in one file: %v", err)
	}
}

// Every way the REST API's files or addresses can be wrong is an error of
// Listen that names the key to fix.
func TestListenErrorsNameTheKey(t *testing.T) {
	p := newTestPKI(t)
	encrypted := encryptKey(t, p.keyFile, "right")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	notPEM := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	free := "127.0.0.1:0"
	cases := []struct {
		name      string
		cfg       ServerConfig
		addr      string
		key, text string
	}{
		{"missing certfile", ServerConfig{CertFile: filepath.Join(t.TempDir(), "nope.pem"), KeyFile: p.keyFile}, free, "restapi.certfile", "no such file"},
		{"missing keyfile", ServerConfig{CertFile: p.certFile, KeyFile: filepath.Join(t.TempDir(), "nope.key")}, free, "restapi.keyfile", "no such file"},
		{"certfile not PEM", ServerConfig{CertFile: notPEM, KeyFile: p.keyFile}, free, "restapi.certfile", "certificate"},
		{"keyfile not PEM", ServerConfig{CertFile: p.certFile, KeyFile: notPEM}, free, "restapi.keyfile", "no PEM private key"},
		{"key of another certificate", ServerConfig{CertFile: p.certFile, KeyFile: p.clientKey}, free, "restapi.certfile", "private key does not match"},
		{"encrypted key without password", ServerConfig{CertFile: p.certFile, KeyFile: encrypted}, free, "restapi.keyfile", "set restapi.keyfile_password"},
		{"wrong password", ServerConfig{CertFile: p.certFile, KeyFile: encrypted, KeyFilePassword: "wrong"}, free, "restapi.keyfile_password", encrypted},
		{"encrypted PKCS#8 key", ServerConfig{CertFile: p.certFile, KeyFile: "testdata/key-pkcs8-encrypted.pem", KeyFilePassword: "pw"}, free, "restapi.keyfile", "-traditional"},
		{"missing cafile", ServerConfig{CertFile: p.certFile, KeyFile: p.keyFile, CAFile: p.caFile + ".missing", VerifyClient: VerifyClientRequired}, free, "restapi.cafile", "no such file"},
		{"cafile without certificates", ServerConfig{CertFile: p.certFile, KeyFile: p.keyFile, CAFile: notPEM, VerifyClient: VerifyClientRequired}, free, "restapi.cafile", "no PEM certificate"},
		{"verify_client without cafile", ServerConfig{CertFile: p.certFile, KeyFile: p.keyFile, VerifyClient: VerifyClientRequired}, free, "restapi.verify_client", "restapi.cafile"},
		{"allowlist network", ServerConfig{Allowlist: []string{"10.0.0.0/33"}}, free, "restapi.allowlist", "10.0.0.0/33"},
		{"allowlist host that does not resolve", ServerConfig{Allowlist: []string{"no-such-host.invalid"}}, free, "restapi.allowlist", "no-such-host.invalid"},
		{"listen address in use", ServerConfig{}, busy.Addr().String(), "restapi.listen", "in use"},
		{"listen address without port", ServerConfig{}, "127.0.0.1", "restapi.listen", "127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ln, err := Listen(context.Background(), c.cfg, c.addr)
			if err == nil {
				_ = ln.Close()
				t.Fatal("Listen succeeded")
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != c.key {
				t.Fatalf("error %v names key %v, want %s", err, ke, c.key)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q does not say %q", err, c.text)
			}
		})
	}
}

func TestUnsafeEndpointsExposed(t *testing.T) {
	any4 := &net.TCPAddr{IP: net.IPv4zero, Port: 8008}
	any6 := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8008}
	public := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8008}
	loop4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8008}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 8008}
	cases := []struct {
		name string
		cfg  ServerConfig
		addr net.Addr
		want bool
	}{
		{"every address, nothing set", ServerConfig{}, any4, true},
		{"every IPv6 address, nothing set", ServerConfig{}, any6, true},
		{"one public address, nothing set", ServerConfig{}, public, true},
		{"TLS alone guards nothing", ServerConfig{CertFile: "c", KeyFile: "k"}, public, true},
		{"verify_client none", ServerConfig{CertFile: "c", KeyFile: "k", VerifyClient: VerifyClientNone}, public, true},
		{"loopback", ServerConfig{}, loop4, false},
		{"IPv6 loopback", ServerConfig{}, loop6, false},
		{"basic auth", ServerConfig{Username: "u", Password: "p"}, any4, false},
		{"allowlist", ServerConfig{Allowlist: []string{"10.0.0.0/8"}}, any4, false},
		{"allowlist_include_members", ServerConfig{AllowlistIncludeMembers: true}, any4, false},
		{"client certificates required", ServerConfig{CertFile: "c", KeyFile: "k", CAFile: "ca", VerifyClient: VerifyClientRequired}, any4, false},
		{"client certificates for unsafe methods", ServerConfig{CertFile: "c", KeyFile: "k", CAFile: "ca", VerifyClient: VerifyClientOptional}, any4, false},
	}
	for _, c := range cases {
		if got := unsafeEndpointsExposed(c.cfg, c.addr); got != c.want {
			t.Errorf("%s: exposed = %v, want %v", c.name, got, c.want)
		}
	}
}

// request_queue_size caps the connections served at once: more slow
// clients than the cap wait for a slot, and every one is answered.
func TestRequestQueueSizeLimitsConcurrentConnections(t *testing.T) {
	const limit, clients = 2, 6
	s := newTestServer(primarySnapshot(t), ServerConfig{RequestQueueSize: limit})
	release := make(chan struct{})
	var inside, most, entered atomic.Int32
	s.handle(http.MethodGet, "slow", func(w http.ResponseWriter, _ *http.Request) {
		n := inside.Add(1)
		entered.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		inside.Add(-1)
		s.writeText(w, http.StatusOK, "done")
	})
	addr := serve(t, s)

	var wg sync.WaitGroup
	codes := make(chan int, clients)
	for range clients {
		wg.Go(func() {
			// One connection per client, closed after the answer.
			client := &http.Client{Timeout: 4 * ioTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Get("http://" + addr + "/slow")
			if err != nil {
				t.Errorf("a waiting client failed: %v", err)
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	poll.Eventually(t, ioTimeout, "the first clients are being served", func() bool { return entered.Load() >= limit })
	// Give an uncapped server the time to let the other clients in too
	// (they are all connected by now); with the cap they keep waiting.
	time.Sleep(200 * time.Millisecond)
	if got := entered.Load(); got != limit {
		t.Errorf("%d requests being served at once, want %d", got, limit)
	}
	for range clients {
		release <- struct{}{}
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a client got %d", code)
		}
	}
	if m := most.Load(); m != limit {
		t.Errorf("at most %d requests served at once, want %d", m, limit)
	}
}

// An idle kept-alive connection does not keep a new client waiting: it
// is closed to make room, and its client reconnects for its next request.
// Over TLS too, where the server tracks the TLS connection.
func TestRequestQueueSizeClosesIdleConnections(t *testing.T) {
	p := newTestPKI(t)
	for _, useTLS := range []bool{false, true} {
		cfg, scheme := ServerConfig{RequestQueueSize: 1}, "http"
		newClient := func(keepAlive bool) *http.Client {
			return &http.Client{Timeout: ioTimeout, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
		}
		if useTLS {
			cfg.CertFile, cfg.KeyFile, scheme = p.certFile, p.keyFile, "https"
			newClient = func(keepAlive bool) *http.Client {
				c := tlsClient(p, false)
				c.Transport.(*http.Transport).DisableKeepAlives = !keepAlive
				return c
			}
		}
		addr := serve(t, newTestServer(primarySnapshot(t), cfg))
		get := func(client *http.Client) error {
			resp, err := client.Get(scheme + "://" + addr + "/primary")
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return errors.New(resp.Status)
			}
			return nil
		}
		keeper := newClient(true) // keeps its connection open
		if err := get(keeper); err != nil {
			t.Fatal(err)
		}
		if err := get(newClient(false)); err != nil {
			t.Fatalf("tls %v: a new client while a kept-alive connection is idle: %v (the server's IdleTimeout is %s)", useTLS, err, IdleTimeout)
		}
		if err := get(keeper); err != nil {
			t.Errorf("tls %v: the kept-alive client after its connection was closed: %v", useTLS, err)
		}
		keeper.CloseIdleConnections()
	}
}

// The certificate of a server given a *Listener comes from the Listener:
// what Listen checked is what Serve uses.
func TestServeUsesTheListenersTLS(t *testing.T) {
	p := newTestPKI(t)
	cfg := ServerConfig{CertFile: p.certFile, KeyFile: p.keyFile}
	ln, err := Listen(context.Background(), cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newTestServer(primarySnapshot(t), cfg).Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", ln.Addr().String(), &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}
