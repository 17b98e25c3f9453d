package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/cluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// serveFile answers GET /patroni with a sample document.
func serveFile(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/patroni" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/patroni"
}

func utc(s string) time.Time {
	t, err := cluster.ParseTime(s)
	if err != nil {
		panic(err)
	}
	return t
}

// Samples of Patroni's own /patroni answers (3.0.2 and 4.x), decoded the
// way the leader race reads them.
func TestDecodePatroniSamples(t *testing.T) {
	c := newClient(t, Options{})
	cases := []struct {
		file       string
		check      func(t *testing.T, st api.Status)
		primary    bool
		position   int64
		running    bool
		name       string
		timeline   int
		nofailover bool
	}{
		{file: "patroni-4.1.4-primary.json", primary: true, position: 67108960, running: true, name: "pg1", timeline: 3,
			check: func(t *testing.T, st api.Status) {
				if !st.PostmasterStartTime.Equal(utc("2024-08-28T19:39:26.352526Z")) {
					t.Errorf("postmaster_start_time %v", st.PostmasterStartTime)
				}
				if len(st.Replication) != 2 || *st.Replication[0].ClientAddr != "10.0.0.2" || st.Replication[1].ClientAddr != nil {
					t.Errorf("replication %+v", st.Replication)
				}
				if st.Tags.Priority() != 2 || !st.Tags.CloneFrom || st.Tags.Custom["datacenter"] != "fra1" {
					t.Errorf("tags %+v", st.Tags)
				}
				if st.ServerVersion != 160004 || st.DatabaseSystemIdentifier != "7408191342382034561" || st.Patroni.Version != "4.1.4" {
					t.Errorf("status %+v", st)
				}
			}},
		{file: "patroni-4.1.4-replica.json", position: 67108960, running: true, name: "pg2", timeline: 3, nofailover: true,
			check: func(t *testing.T, st api.Status) {
				if st.XLog.Replayed() != 67100000 || st.XLog.Received() != 67108960 {
					t.Errorf("xlog %+v", st.XLog)
				}
				if !st.XLog.ReplayedTimestamp.Equal(utc("2024-08-28T19:45:12.000123Z")) {
					t.Errorf("replayed_timestamp %v", st.XLog.ReplayedTimestamp)
				}
				if !st.QuorumStandby || !st.Pause || !st.WatchdogFailed || !st.PendingRestart || st.ReplicationState != api.ReplicationStreaming {
					t.Errorf("flags %+v", st)
				}
				if st.PendingRestartReason["max_connections"] != (api.ParamChange{OldValue: "100", NewValue: "200"}) {
					t.Errorf("pending_restart_reason %+v", st.PendingRestartReason)
				}
				if st.ScheduledRestart["postgres_version"] != "16.5" {
					t.Errorf("scheduled_restart %+v", st.ScheduledRestart)
				}
				if !st.Tags.NoLoadBalance {
					t.Error(`tag noloadbalance "on" not read as true`)
				}
			}},
		{file: "patroni-4.1.4-stopped.json", name: "pg3",
			check: func(t *testing.T, st api.Status) {
				if st.XLog != nil || !st.ClusterUnlocked || !st.FailsafeModeIsActive || st.State != api.StateStopped {
					t.Errorf("status %+v", st)
				}
			}},
		{file: "patroni-3.0.2-master.json", primary: true, position: 50331800, running: true, timeline: 2,
			check: func(t *testing.T, st api.Status) {
				if st.Role != "master" || st.Patroni.Scope != "batman" {
					t.Errorf("status %+v", st)
				}
				if !st.PostmasterStartTime.Equal(utc("2023-04-14T18:27:00.123456Z")) {
					t.Errorf("postmaster_start_time with +02:00: %v", st.PostmasterStartTime)
				}
			}},
		{file: "patroni-3.0.2-replica.json", position: 50331800, running: true, timeline: 2,
			check: func(t *testing.T, st api.Status) {
				if st.XLog.ReplayedTimestamp != nil || !st.SyncStandby || st.LoggerQueueSize != 1200 || st.LoggerRecordsLost != 3 {
					t.Errorf("status %+v", st)
				}
			}},
		// The status query failed while PostgreSQL ran: a primary by role.
		{file: "patroni-3.0.2-unknown.json", primary: true},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			st, err := c.GetStatus(context.Background(), serveFile(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if st.IsPrimary() != tc.primary || st.WALPosition() != tc.position || st.IsRunning() != tc.running ||
				st.Patroni.Name != tc.name || st.Timeline != tc.timeline || st.Tags.NoFailover != tc.nofailover {
				t.Errorf("primary %v position %d running %v name %q timeline %d nofailover %v",
					st.IsPrimary(), st.WALPosition(), st.IsRunning(), st.Patroni.Name, st.Timeline, st.Tags.NoFailover)
			}
			if tc.check != nil {
				tc.check(t, st)
			}
		})
	}
}

// custos's own status document survives a round trip through a real
// server and the client unchanged.
func TestDecodeCustosStatus(t *testing.T) {
	loc, rep := int64(0x3000060), int64(0x3000000)
	addr := "127.0.0.1"
	prio := 3
	want := api.Status{
		State:               api.StateRunning,
		PostmasterStartTime: api.NewTimestamp(time.Date(2025, 1, 2, 3, 4, 5, 678000, time.UTC)),
		Role:                cluster.RoleReplica,
		ServerVersion:       150010,
		XLog:                &api.XLog{ReceivedLocation: &loc, ReplayedLocation: &rep, ReplayedTimestamp: api.NewTimestamp(time.Date(2025, 1, 2, 3, 5, 0, 0, time.UTC)), Paused: true},
		SyncStandby:         true,
		Timeline:            4,
		ReplicationState:    api.ReplicationStreaming,
		Replication:         []api.Replication{{Usename: "replicator", ApplicationName: "n3", ClientAddr: &addr, State: "streaming", SyncState: "async"}},
		DCSLastSeen:         1735787045,
		Tags:                cluster.Tags{NoSync: true, FailoverPriority: &prio, Custom: map[string]any{"zone": "z1"}},
		Patroni:             api.Agent{Version: "0.1.0", Scope: "demo", Name: "n2"},
		Custos:              &api.Extension{Reason: "following the leader n1", Problems: []string{"members/x: malformed"}},
	}
	var latest api.Latest
	latest.Publish(&api.Snapshot{Status: want})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.New(api.ServerConfig{}, &latest, nil).Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// api_url as members publish it, and the bare base URL.
	for _, u := range []string{"http://" + ln.Addr().String() + "/patroni", "http://" + ln.Addr().String()} {
		got, err := newClient(t, Options{}).GetStatus(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(want)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Errorf("round trip via %s:\n got %s\nwant %s", u, gotJSON, wantJSON)
		}
	}
}

func TestErrorsNameTheURL(t *testing.T) {
	c := newClient(t, Options{})

	// Nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/patroni"
	_ = ln.Close()
	if _, err := c.GetStatus(context.Background(), closed); err == nil || !strings.Contains(err.Error(), closed) {
		t.Errorf("connection refused: %v", err)
	} else if strings.Count(err.Error(), closed) != 1 {
		t.Errorf("the URL appears more than once: %v", err)
	}

	// Unexpected status and unparsable body.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/patroni" {
			http.Error(w, "no such thing", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte("<html>not json"))
	}))
	defer srv.Close()
	_, err = c.GetStatus(context.Background(), srv.URL+"/patroni")
	var herr *HTTPError
	if !errors.As(err, &herr) || herr.StatusCode != http.StatusNotFound || !strings.Contains(err.Error(), srv.URL+"/patroni") || !strings.Contains(err.Error(), "no such thing") {
		t.Errorf("404: %v", err)
	}
	_, err = c.GetStatus(context.Background(), srv.URL+"/other")
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/other") || !strings.Contains(err.Error(), "decoding") {
		t.Errorf("bad JSON: %v", err)
	}

	for _, bad := range []string{"", "not a url", "ftp://h/x", "http://"} {
		if _, err := c.GetStatus(context.Background(), bad); err == nil {
			t.Errorf("GetStatus(%q) succeeded", bad)
		}
	}
}

// A peer that does not answer costs at most StatusTimeout, and less when
// the caller's context says so.
func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newClient(t, Options{})

	start := time.Now()
	_, err := c.GetStatus(context.Background(), srv.URL+"/patroni")
	if elapsed := time.Since(start); err == nil || elapsed < StatusTimeout || elapsed > StatusTimeout+time.Second {
		t.Errorf("hanging peer: %v after %v, want an error after %v", err, elapsed, StatusTimeout)
	}
	if !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("timeout error does not name the URL: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.GetStatus(ctx, srv.URL+"/patroni"); err == nil || time.Since(start) > time.Second {
		t.Errorf("short deadline: %v after %v", err, time.Since(start))
	}
}

// Credentials go with the unsafe methods only: GET endpoints are open, and
// a member's api_url comes from the DCS, so a GET must not hand the
// password to whatever host it names.
func TestBasicAuthOnlyOnUnsafeMethods(t *testing.T) {
	var mu sync.Mutex
	auth := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth[r.Method+" "+r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		_, _ = w.Write([]byte(`{"state":"running","role":"replica","dcs_last_seen":0,"patroni":{"version":"x","scope":"s"}}`))
	}))
	defer srv.Close()
	c := newClient(t, Options{Username: "ctl", Password: "pa:ss"})
	ctx := context.Background()
	if _, err := c.GetStatus(ctx, srv.URL+"/patroni"); err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete} {
		if _, err := c.Do(ctx, method, srv.URL, "config", nil); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{
		"GET /patroni":   "",
		"GET /config":    "",
		"POST /config":   "Basic Y3RsOnBhOnNz",
		"PATCH /config":  "Basic Y3RsOnBhOnNz",
		"PUT /config":    "Basic Y3RsOnBhOnNz",
		"DELETE /config": "Basic Y3RsOnBhOnNz",
	}
	mu.Lock()
	defer mu.Unlock()
	for req, w := range want {
		if got, seen := auth[req]; !seen || got != w {
			t.Errorf("%s: Authorization %q (request seen: %v), want %q", req, got, seen, w)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	clientCert, clientKey := selfSigned(t, dir, "client")
	var sawClientCert bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawClientCert = r.TLS != nil && len(r.TLS.PeerCertificates) == 1 && r.TLS.PeerCertificates[0].Subject.CommonName == "client"
		_, _ = w.Write([]byte(`{"state":"running","role":"primary","xlog":{"location":5},"dcs_last_seen":0,"patroni":{"version":"x","scope":"s"}}`))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	st, err := newClient(t, Options{CACert: caFile, CertFile: clientCert, KeyFile: clientKey}).GetStatus(context.Background(), srv.URL+"/patroni")
	if err != nil || st.WALPosition() != 5 || !sawClientCert {
		t.Errorf("with CA and client certificate: %v, position %d, client cert seen %v", err, st.WALPosition(), sawClientCert)
	}
	// Without the CA the server is not trusted...
	if _, err := newClient(t, Options{CertFile: clientCert, KeyFile: clientKey}).GetStatus(context.Background(), srv.URL); err == nil {
		t.Error("an unknown server certificate was accepted")
	}
	// ...unless ctl.insecure says so.
	if _, err := newClient(t, Options{Insecure: true, CertFile: clientCert, KeyFile: clientKey}).GetStatus(context.Background(), srv.URL); err != nil {
		t.Errorf("insecure: %v", err)
	}

	for name, opts := range map[string]Options{
		"missing cacert":  {CACert: filepath.Join(dir, "nope.pem")},
		"cacert not PEM":  {CACert: clientKey + ".nope"},
		"missing keyfile": {CertFile: clientCert, KeyFile: filepath.Join(dir, "nope.key")},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// selfSigned writes a self-signed certificate and its key.
func selfSigned(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ctl.keyfile_password decrypts the client's key (legacy PEM encryption);
// a wrong one is an error naming it.
func TestEncryptedClientKey(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir, "client")
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	enc, err := x509.EncryptPEMBlock(rand.Reader, block.Type, block.Bytes, []byte("pw"), x509.PEMCipherAES128)
	if err != nil {
		t.Fatal(err)
	}
	encFile := filepath.Join(dir, "client-enc.key")
	if err := os.WriteFile(encFile, pem.EncodeToMemory(enc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{CertFile: certFile, KeyFile: encFile, KeyFilePassword: "pw"}); err != nil {
		t.Errorf("with the password: %v", err)
	}
	if _, err := New(Options{CertFile: certFile, KeyFile: encFile, KeyFilePassword: "nope"}); err == nil || !strings.Contains(err.Error(), "ctl.keyfile_password") {
		t.Errorf("with a wrong password: %v", err)
	}
}
