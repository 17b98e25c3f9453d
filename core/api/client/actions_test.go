package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder answers every request with the status and body the test sets,
// and keeps what it received.
type recorder struct {
	mu       sync.Mutex
	got      []string
	auth     []string
	status   int
	body     string
	delay    time.Duration
	jsonType []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.got = append(r.got, strings.TrimSpace(req.Method+" "+req.URL.Path+" "+string(body)))
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.jsonType = append(r.jsonType, req.Header.Get("Content-Type"))
	status, answer, delay := r.status, r.body, r.delay
	r.mu.Unlock()
	time.Sleep(delay) // a switchover answers once it is done
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

// Every call sends Patroni's method, path and JSON body to the member's
// host (whatever the path of its api_url), and returns the answer whatever
// its status.
func TestActionsSendPatronisRequests(t *testing.T) {
	rec := &recorder{status: http.StatusServiceUnavailable, body: "Switchover failed\n"}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newClient(t, Options{Username: "u", Password: "p"})
	ctx := context.Background()
	apiURL := srv.URL + "/patroni"
	calls := []struct {
		do   func() (Response, error)
		want string
	}{
		{func() (Response, error) {
			return c.Switchover(ctx, apiURL, SwitchoverRequest{Leader: "a", Candidate: "b", ScheduledAt: "2030-01-01T00:00:00+00:00"})
		}, `POST /switchover {"leader":"a","candidate":"b","scheduled_at":"2030-01-01T00:00:00+00:00"}`},
		{func() (Response, error) { return c.Switchover(ctx, apiURL, SwitchoverRequest{Leader: "a"}) }, `POST /switchover {"leader":"a"}`},
		{func() (Response, error) { return c.Failover(ctx, apiURL, FailoverRequest{Candidate: "b"}) }, `POST /failover {"candidate":"b"}`},
		{func() (Response, error) { return c.DeleteSwitchover(ctx, apiURL) }, `DELETE /switchover`},
		{func() (Response, error) {
			return c.Restart(ctx, apiURL, RestartRequest{Schedule: "2030-01-01T00:00:00+00:00", PostgresVersion: "15.4", Timeout: "30s", RestartPending: true, Role: "replica"})
		}, `POST /restart {"schedule":"2030-01-01T00:00:00+00:00","role":"replica","postgres_version":"15.4","timeout":"30s","restart_pending":true}`},
		{func() (Response, error) { return c.Restart(ctx, apiURL, RestartRequest{}) }, `POST /restart {}`},
		{func() (Response, error) { return c.DeleteRestart(ctx, apiURL) }, `DELETE /restart`},
		{func() (Response, error) { return c.Reinitialize(ctx, apiURL, ReinitializeRequest{}) }, `POST /reinitialize {"force":false}`},
		{func() (Response, error) {
			return c.Reinitialize(ctx, apiURL, ReinitializeRequest{Force: true, FromLeader: true})
		}, `POST /reinitialize {"force":true,"from_leader":true}`},
		{func() (Response, error) { return c.Reload(ctx, apiURL) }, `POST /reload`},
		{func() (Response, error) { return c.PatchConfig(ctx, apiURL, map[string]any{"pause": nil}) }, `PATCH /config {"pause":null}`},
		{func() (Response, error) { return c.PutConfig(ctx, apiURL, map[string]any{"ttl": 30}) }, `PUT /config {"ttl":30}`},
	}
	for i, call := range calls {
		resp, err := call.do()
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Body != "Switchover failed" || resp.OK() {
			t.Errorf("call %d: %+v, %v", i, resp, err)
		}
		if rec.got[i] != call.want {
			t.Errorf("call %d sent %q, want %q", i, rec.got[i], call.want)
		}
		if rec.auth[i] != "Basic dTpw" {
			t.Errorf("call %d: Authorization %q", i, rec.auth[i])
		}
		if hasBody := strings.Contains(call.want, "{"); hasBody != (rec.jsonType[i] == "application/json") {
			t.Errorf("call %d: Content-Type %q", i, rec.jsonType[i])
		}
	}
}

// A switchover may take longer than a status request: only the caller's
// context bounds it.
func TestActionsWaitForTheAnswer(t *testing.T) {
	rec := &recorder{status: http.StatusOK, body: `Successfully switched over to "b"`, delay: StatusTimeout + 500*time.Millisecond}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newClient(t, Options{})
	resp, err := c.Switchover(context.Background(), srv.URL, SwitchoverRequest{Leader: "a"})
	if err != nil || !resp.OK() || resp.Body != `Successfully switched over to "b"` {
		t.Errorf("slow answer: %+v, %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Switchover(ctx, srv.URL, SwitchoverRequest{Leader: "a"}); err == nil || !strings.Contains(err.Error(), "POST "+srv.URL+"/switchover") {
		t.Errorf("deadline: %v", err)
	}
}

func TestActionErrorsNameTheRequest(t *testing.T) {
	c := newClient(t, Options{})
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if _, err := c.Reload(context.Background(), url+"/patroni"); err == nil || !strings.Contains(err.Error(), "POST "+url+"/reload") {
		t.Errorf("refused: %v", err)
	}
	for _, bad := range []string{"", "ftp://h/x", "http://"} {
		if _, err := c.Reload(context.Background(), bad); err == nil {
			t.Errorf("Reload(%q) succeeded", bad)
		}
	}
}

func TestEndpointURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.0.1:8008/patroni":  "http://10.0.0.1:8008/restart",
		"https://h:8008":                "https://h:8008/restart",
		"http://[::1]:8008/x/y?q=1#f":   "http://[::1]:8008/restart",
		"http://user:pw@h:8008/patroni": "http://user:pw@h:8008/restart",
	} {
		if got, err := EndpointURL(in, "restart"); err != nil || got != want {
			t.Errorf("EndpointURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
