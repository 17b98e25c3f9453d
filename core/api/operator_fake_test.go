package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// fakeOperator records what the handlers ask and answers as told.
type fakeOperator struct {
	mu sync.Mutex
	// clusters are the answers of successive ReadCluster calls; the last
	// one repeats. readErr fails every read.
	clusters []*cluster.Cluster
	reads    int
	readErr  error
	// reply answers Request; requestErr fails it.
	reply      ha.Reply
	requestErr error
	requests   []ha.Request
	waits      []bool
	reloads    int
	// failoverErr and configErr fail the writes.
	failoverErr    error
	failoverWrites []failoverWrite
	configErr      error
	configWrites   []configWrite
	// peers answer PeerStatus; a member not listed does not answer.
	peers     map[string]ha.Peer
	peerCalls []string
	wakes     int
}

type failoverWrite struct {
	data, version string
}

type configWrite struct {
	data, version string
}

func (f *fakeOperator) Request(_ context.Context, r ha.Request, wait bool) (ha.Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r)
	f.waits = append(f.waits, wait)
	return f.reply, f.requestErr
}

func (f *fakeOperator) Reload() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
}

func (f *fakeOperator) ReadCluster(context.Context) (*cluster.Cluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readErr != nil {
		return nil, f.readErr
	}
	i := min(f.reads, len(f.clusters)-1)
	f.reads++
	return f.clusters[i], nil
}

func (f *fakeOperator) WriteFailover(_ context.Context, fo cluster.Failover, version string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failoverErr != nil {
		return f.failoverErr
	}
	f.failoverWrites = append(f.failoverWrites, failoverWrite{string(fo.Marshal()), version})
	return nil
}

func (f *fakeOperator) WriteConfig(_ context.Context, data []byte, version string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.configErr != nil {
		return f.configErr
	}
	f.configWrites = append(f.configWrites, configWrite{string(data), version})
	return nil
}

func (f *fakeOperator) PeerStatus(_ context.Context, m cluster.Member) (ha.Peer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peerCalls = append(f.peerCalls, m.Name)
	p, ok := f.peers[m.Name]
	if !ok {
		return ha.Peer{Name: m.Name}, errors.New("connection refused")
	}
	return p, nil
}

func (f *fakeOperator) Wake() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wakes++
}

func (f *fakeOperator) FailsafeHeartbeat(string) {}

// touched reports whether the operator was asked to do anything at all.
func (f *fakeOperator) touched() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads > 0 || len(f.requests) > 0 || f.reloads > 0 || len(f.failoverWrites) > 0 ||
		len(f.configWrites) > 0 || len(f.peerCalls) > 0 || f.wakes > 0
}

// healthyPeer is a running replica that may take over.
func healthyPeer(name string) ha.Peer {
	return ha.Peer{Name: name, Reachable: true, Running: true, LSN: node2Replay, Timeline: 2}
}

// opCluster is the test cluster (leader node1; node2 healthy, node3
// nofailover, node4 being created) with edits to its DCS content.
func opCluster(t testing.TB, edit func(raw *dcs.Cluster)) *cluster.Cluster {
	t.Helper()
	raw := testClusterRaw()
	if edit != nil {
		edit(raw)
	}
	c, problems := cluster.FromDCS(raw)
	if len(problems) > 0 {
		t.Fatalf("test cluster does not parse: %v", problems)
	}
	return c
}

// withConfig sets /config.
func withConfig(config string) func(*dcs.Cluster) {
	return func(raw *dcs.Cluster) { raw.Config = &dcs.Value{Data: []byte(config), Version: "4"} }
}

// newOpServer is a server on node1's snapshot acting through op, with the
// switchover polls shortened.
func newOpServer(t testing.TB, op *fakeOperator, cfg ServerConfig) *Server {
	t.Helper()
	s := New(cfg, fixedSource{primarySnapshot(t)}, nil, WithOperator(op))
	s.now = func() time.Time { return testNow }
	s.pollInterval = time.Millisecond
	return s
}

// send serves one request with a JSON body ("" sends none) and returns
// the status and the body.
func send(s *Server, method, target, body string) (int, string) {
	rec := sendRecorded(s, method, target, body, nil)
	return rec.Code, rec.Body.String()
}

func sendRecorded(s *Server, method, target, body string, edit func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if edit != nil {
		edit(req)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// expectAnswer checks a status and a message.
func expectAnswer(t *testing.T, what string, gotCode int, gotBody string, wantCode int, wantBody string) {
	t.Helper()
	if gotCode != wantCode || gotBody != wantBody {
		t.Errorf("%s = %d %q, want %d %q", what, gotCode, gotBody, wantCode, wantBody)
	}
}
