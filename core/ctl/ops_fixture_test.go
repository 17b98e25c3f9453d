package ctl

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

// fixedNow is the clock of the operation tests: printed timestamps and the
// example times of prompts come from it.
var fixedNow = time.Date(2024, 5, 1, 10, 0, 0, 123456000, time.UTC)

// seedTTL keeps the fixture's member and leader keys alive for the whole
// test.
const seedTTL = time.Hour

// request is one call a fake member received.
type request struct {
	member string
	method string
	path   string
	body   string
	auth   string
}

func (r request) String() string {
	s := r.method + " " + r.member + " " + r.path
	if r.body != "" {
		s += " " + r.body
	}
	return s
}

// answer is a fake member's reply.
type answer struct {
	status int
	body   string
}

// opsHarness is a cluster for the operation commands: an in-memory DCS
// seeded with members whose api_url points at httptest servers that record
// every request and answer as the test says (Patroni's answers by
// default).
type opsHarness struct {
	t       *testing.T
	store   *dcstest.MemoryStore
	scope   string
	servers map[string]*httptest.Server
	// backends writes keys as each member (by name) and as "seeder".
	backends map[string]dcs.Backend

	mu       sync.Mutex
	requests []request
	// answers overrides the default answer to "METHOD /path" for all
	// members, or to "member METHOD /path" for one.
	answers map[string]func(r request) answer
	// wrap, when set, wraps the backends custosctl opens.
	wrap func(dcs.Backend) dcs.Backend
	// subst replaces run-specific text (temporary paths) in transcripts.
	subst map[string]string
}

// newOpsHarness starts the fake members of raw and seeds the store.
// Members' api_url values of the form "{name}" are replaced by their fake
// server's URL.
func newOpsHarness(t *testing.T, raw *dcs.Cluster) *opsHarness {
	t.Helper()
	h := &opsHarness{
		t: t, store: dcstest.NewMemoryStore(), scope: "demo",
		servers: map[string]*httptest.Server{}, backends: map[string]dcs.Backend{},
		answers: map[string]func(request) answer{}, subst: map[string]string{},
	}
	t.Cleanup(h.store.Stop)
	for _, m := range raw.Members {
		name := m.Name
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(name, w, r) }))
		t.Cleanup(srv.Close)
		h.servers[name] = srv
	}
	seeder := h.backend("seeder")
	ctx := context.Background()
	for _, k := range dcs.Keys {
		if v := raw.Get(k); v != nil {
			if err := seeder.Set(ctx, k, v.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, m := range raw.Members {
		if err := h.backend(m.Name).TouchMember(ctx, []byte(h.withURLs(string(m.Data)))); err != nil {
			t.Fatal(err)
		}
	}
	if raw.Leader != nil {
		if _, err := h.backend(raw.Leader.Name).AcquireLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// backend is a backend of the store writing as the named member.
func (h *opsHarness) backend(member string) dcs.Backend {
	h.t.Helper()
	if b, ok := h.backends[member]; ok {
		return b
	}
	b := h.store.NewBackend()
	if err := b.Configure(context.Background(), dcs.ConfigureRequest{Scope: h.scope, Namespace: "/service", Member: member, TTL: seedTTL, RetryTimeout: time.Second}); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = b.Close(context.Background()) })
	h.backends[member] = b
	return b
}

// withURLs replaces "{name}" with the member's fake API URL.
func (h *opsHarness) withURLs(s string) string {
	for name, srv := range h.servers {
		s = strings.ReplaceAll(s, "{"+name+"}", srv.URL+"/patroni")
	}
	return s
}

// stable replaces the fake servers' URLs with fixed ones, so that output
// compares with goldens.
func (h *opsHarness) stable(s string) string {
	for from, to := range h.subst {
		s = strings.ReplaceAll(s, from, to)
	}
	for name, srv := range h.servers {
		s = strings.ReplaceAll(s, srv.URL, "http://"+name+":8008")
		s = strings.ReplaceAll(s, strings.TrimPrefix(srv.URL, "http://"), name+":8008")
	}
	return s
}

// down stops a member's REST API: connections are refused.
func (h *opsHarness) down(name string) { h.servers[name].Close() }

func (h *opsHarness) serve(member string, w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := request{member: member, method: r.Method, path: r.URL.Path, body: string(body), auth: r.Header.Get("Authorization")}
	h.mu.Lock()
	h.requests = append(h.requests, req)
	fn := h.answers[member+" "+r.Method+" "+r.URL.Path]
	if fn == nil {
		fn = h.answers[r.Method+" "+r.URL.Path]
	}
	h.mu.Unlock()
	a := answer{}
	if fn != nil {
		a = fn(req)
	} else {
		a = h.patroniAnswer(req)
	}
	if strings.HasPrefix(a.body, "{") {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

// patroniAnswer is what a healthy Patroni member answers to the mutating
// calls patronictl makes (status codes and bodies as Patroni sends them).
func (h *opsHarness) patroniAnswer(r request) answer {
	var body map[string]any
	_ = json.Unmarshal([]byte(r.body), &body)
	switch r.method + " " + r.path {
	case "GET /patroni":
		return answer{200, fmt.Sprintf(`{"state":"running","role":"replica","server_version":150008,"dcs_last_seen":0,"patroni":{"version":"4.1.4","scope":"demo","name":%q}}`, r.member)}
	case "POST /switchover":
		if body["scheduled_at"] != nil {
			return answer{202, "Switchover scheduled"}
		}
		return answer{200, fmt.Sprintf("Successfully switched over to %q", body["candidate"])}
	case "POST /failover":
		return answer{200, fmt.Sprintf("Successfully failed over to %q", body["candidate"])}
	case "POST /restart":
		if body["schedule"] != nil {
			return answer{202, "Restart scheduled"}
		}
		return answer{200, "restarted successfully"}
	case "DELETE /restart":
		return answer{200, "scheduled restart deleted"}
	case "POST /reload":
		return answer{202, "reload scheduled"}
	case "POST /reinitialize":
		return answer{200, "reinitialize started"}
	case "DELETE /switchover":
		return answer{200, "scheduled switchover deleted"}
	case "PATCH /config":
		return answer{200, r.body}
	}
	return answer{404, "Not Found"}
}

// answer sets the answer to "METHOD /path" (all members) or "member
// METHOD /path".
func (h *opsHarness) answer(key string, fn func(request) answer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answers[key] = fn
}

// takeRequests returns and forgets the requests received so far.
func (h *opsHarness) takeRequests() []request {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.requests
	h.requests = nil
	return r
}

// opsRun is one custosctl run against the harness.
type opsRun struct {
	code           int
	stdout, stderr string
	requests       []request
}

// run runs custosctl with -d pointing nowhere (the harness opens the DCS)
// and stdin as given; extra global options come first in args.
func (h *opsHarness) run(stdin string, args ...string) opsRun {
	h.t.Helper()
	return h.runEnv(stdin, nil, append([]string{"-d", "etcd3://127.0.0.1:1"}, args...)...)
}

func (h *opsHarness) runEnv(stdin string, vars map[string]string, args ...string) opsRun {
	h.t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{
		stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, lookupEnv: envOf(vars), executable: exe,
		now: func() time.Time { return fixedNow }, pollInterval: 10 * time.Millisecond,
		dcs: func(ctx context.Context, scope string) (dcs.Backend, error) {
			b := h.store.NewBackend()
			err := b.Configure(ctx, dcs.ConfigureRequest{Scope: scope, Namespace: "/service", Member: "custosctl", TTL: 30 * time.Second, RetryTimeout: time.Second})
			if err != nil {
				return nil, err
			}
			if h.wrap != nil {
				return h.wrap(b), nil
			}
			return b, nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, args, e)
	return opsRun{code: code, stdout: h.stable(stdout.String()), stderr: h.stable(stderr.String()), requests: h.takeRequests()}
}

// transcript renders a run for a golden file: the command line, the
// answers typed, the exit code, stdout, stderr and the requests the
// members received.
func (h *opsHarness) transcript(stdin string, args []string, r opsRun) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "$ custosctl %s\n", h.stable(strings.Join(quoteArgs(args), " ")))
	if stdin != "" {
		fmt.Fprintf(&b, "--- stdin\n%s", stdin)
		if !strings.HasSuffix(stdin, "\n") {
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "--- exit %d\n--- stdout\n%s", r.code, r.stdout)
	if r.stderr != "" {
		fmt.Fprintf(&b, "--- stderr\n%s", r.stderr)
	}
	if len(r.requests) > 0 {
		b.WriteString("--- requests\n")
		for _, q := range r.requests {
			b.WriteString(h.stable(q.String()) + "\n")
		}
	}
	return []byte(b.String())
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

// goldenRun runs a command and compares its transcript with
// testdata/<name>.golden.
func (h *opsHarness) goldenRun(name, stdin string, args ...string) opsRun {
	h.t.Helper()
	r := h.run(stdin, args...)
	golden(h.t, name, h.transcript(stdin, args, r))
	return r
}

// read reads the cluster's raw keys.
func (h *opsHarness) read() *dcs.Cluster {
	h.t.Helper()
	c, err := h.backend("seeder").GetCluster(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// key is a cluster-wide key's value, "" when absent.
func (h *opsHarness) key(k dcs.Key) string {
	if v := h.read().Get(k); v != nil {
		return string(v.Data)
	}
	return ""
}

// moveLeader hands the leader key from one member to another.
func (h *opsHarness) moveLeader(from, to string) {
	ctx := context.Background()
	if err := h.backend(from).DeleteLeader(ctx); err != nil {
		h.t.Error(err)
	}
	if _, err := h.backend(to).AcquireLeader(ctx); err != nil {
		h.t.Error(err)
	}
}

// touch rewrites a member's key through a function of its JSON. It may
// run on a goroutine of a fake member: failures are errors, not fatal.
func (h *opsHarness) touch(member string, edit func(map[string]any)) {
	c, err := h.backends["seeder"].GetCluster(context.Background())
	if err != nil {
		h.t.Error(err)
		return
	}
	m := c.Member(member)
	if m == nil {
		h.t.Errorf("no member %s", member)
		return
	}
	var v map[string]any
	if err := json.Unmarshal(m.Data, &v); err != nil {
		h.t.Error(err)
		return
	}
	edit(v)
	data, _ := json.Marshal(v)
	if err := h.backends[member].TouchMember(context.Background(), data); err != nil {
		h.t.Error(err)
	}
}

// opsRaw is a healthy three-member cluster: node1 leads on timeline 2,
// node2 and node3 stream from it; node3 replicates from node2.
func opsRaw() *dcs.Cluster {
	return &dcs.Cluster{
		Initialize: value("7268616322854375442"),
		Config:     value(`{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"parameters":{"max_connections":100,"wal_log_hints":"on"},"pg_hba":["host replication replicator 127.0.0.1/32 md5","host all all 0.0.0.0/0 md5"]}}`),
		Leader:     &dcs.Leader{Name: "node1"},
		Members: []dcs.Member{
			{Name: "node1", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"{node1}","state":"running","role":"primary","version":"4.1.4","xlog_location":50331648,"timeline":2}`)},
			{Name: "node2", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"{node2}","state":"running","role":"replica","version":"4.1.4","xlog_location":50331648,"timeline":2,"replication_state":"streaming"}`)},
			{Name: "node3", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5434/postgres","api_url":"{node3}","state":"running","role":"replica","version":"4.1.4","xlog_location":48758784,"timeline":2,"replication_state":"streaming","tags":{"replicatefrom":"node2"}}`)},
		},
		History: value(`[[1,25165984,"no recovery target specified","2024-05-01T09:00:00.000000+00:00","node1"]]`),
		Status:  value(`{"optime":50331648}`),
	}
}

// methods lists "METHOD member path" of requests, for assertions.
func methods(rs []request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.method + " " + r.member + " " + r.path
	}
	return out
}

func hasRequest(rs []request, want string) bool { return slices.Contains(methods(rs), want) }

// appendTo appends text to a file.
func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}
