package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func httptestDo(s *Server, method, target string) *httptest.ResponseRecorder {
	return httptestDoAuth(s, method, target, "", "")
}

// httptestDoAuth sends the request from remote (default 192.0.2.1:1234)
// with the Authorization header when auth is set.
func httptestDoAuth(s *Server, method, target, auth, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(`{}`))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if remote != "" {
		req.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// withUnsafeRoute registers a test handler on POST /probe, as the mutating
// endpoints will be.
func withUnsafeRoute(s *Server) *int {
	calls := new(int)
	s.handle(http.MethodPost, "probe", func(w http.ResponseWriter, _ *http.Request) {
		*calls++
		s.writeText(w, http.StatusAccepted, "done")
	})
	return calls
}

func TestBasicAuth(t *testing.T) {
	s := newTestServer(primarySnapshot(t), ServerConfig{Username: "admin", Password: "s3cret:with colon"})
	calls := withUnsafeRoute(s)
	cases := []struct {
		name, auth string
		want       int
		msg        string
	}{
		{"no header", "", http.StatusUnauthorized, msgNoAuthHeader},
		{"wrong password", basicAuthHeader("admin", "wrong"), http.StatusUnauthorized, msgNotAuthenticated},
		{"wrong user", basicAuthHeader("root", "s3cret:with colon"), http.StatusUnauthorized, msgNotAuthenticated},
		{"not basic", "Bearer abc", http.StatusUnauthorized, msgNotAuthenticated},
		{"right", basicAuthHeader("admin", "s3cret:with colon"), http.StatusAccepted, "done"},
	}
	for _, c := range cases {
		rec := httptestDoAuth(s, http.MethodPost, "/probe", c.auth, "")
		if rec.Code != c.want || rec.Body.String() != c.msg {
			t.Errorf("%s: POST /probe = %d %q, want %d %q", c.name, rec.Code, rec.Body, c.want, c.msg)
		}
		challenge := rec.Header().Get("WWW-Authenticate")
		if c.want == http.StatusUnauthorized && challenge != `Basic realm="Patroni"` {
			t.Errorf("%s: WWW-Authenticate %q", c.name, challenge)
		}
		if c.want != http.StatusUnauthorized && challenge != "" {
			t.Errorf("%s: WWW-Authenticate on success: %q", c.name, challenge)
		}
	}
	if *calls != 1 {
		t.Errorf("the handler ran %d times, want once (only with the right credentials)", *calls)
	}
	// Reads stay open.
	if rec := get(t, s, "/patroni"); rec.Code != http.StatusOK {
		t.Errorf("GET /patroni with auth configured = %d", rec.Code)
	}
}

func TestNoAuthConfigured(t *testing.T) {
	s := newTestServer(primarySnapshot(t), ServerConfig{})
	calls := withUnsafeRoute(s)
	if rec := httptestDo(s, http.MethodPost, "/probe"); rec.Code != http.StatusAccepted || *calls != 1 {
		t.Errorf("POST /probe without auth configured = %d, calls %d", rec.Code, *calls)
	}
}

func TestAllowlist(t *testing.T) {
	s := newTestServer(primarySnapshot(t), ServerConfig{
		Allowlist: []string{"10.0.0.0/8", "192.0.2.7", "::1"},
		Username:  "admin", Password: "pw",
	})
	if _, err := s.prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := withUnsafeRoute(s)
	good := basicAuthHeader("admin", "pw")
	cases := []struct {
		remote, auth string
		want         int
	}{
		{"10.1.2.3:5000", good, http.StatusAccepted},
		{"192.0.2.7:5000", good, http.StatusAccepted},
		{"[::1]:5000", good, http.StatusAccepted},
		{"192.0.2.8:5000", good, http.StatusForbidden},
		// The allowlist comes before authentication, as in Patroni.
		{"192.0.2.8:5000", "", http.StatusForbidden},
		{"10.1.2.3:5000", "", http.StatusUnauthorized},
	}
	for _, c := range cases {
		rec := httptestDoAuth(s, http.MethodPost, "/probe", c.auth, c.remote)
		if rec.Code != c.want {
			t.Errorf("POST /probe from %s (auth %v) = %d, want %d", c.remote, c.auth != "", rec.Code, c.want)
		}
		if c.want == http.StatusForbidden && rec.Body.String() != msgAccessDenied {
			t.Errorf("403 body %q", rec.Body)
		}
	}
	if *calls != 3 {
		t.Errorf("handler calls %d, want 3", *calls)
	}
	// GETs are not restricted.
	if rec := httptestDoAuth(s, http.MethodGet, "/patroni", "", "198.51.100.1:1"); rec.Code != http.StatusOK {
		t.Errorf("GET from outside the allowlist = %d", rec.Code)
	}
}

func TestAllowlistIncludeMembers(t *testing.T) {
	// The test cluster's members publish api_url on 127.0.0.1.
	s := newTestServer(primarySnapshot(t), ServerConfig{AllowlistIncludeMembers: true})
	if _, err := s.prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := withUnsafeRoute(s)
	if rec := httptestDoAuth(s, http.MethodPost, "/probe", "", "127.0.0.1:4000"); rec.Code != http.StatusAccepted {
		t.Errorf("POST from a member's address = %d", rec.Code)
	}
	if rec := httptestDoAuth(s, http.MethodPost, "/probe", "", "192.0.2.1:4000"); rec.Code != http.StatusForbidden {
		t.Errorf("POST from a stranger = %d", rec.Code)
	}
	if *calls != 1 {
		t.Errorf("handler calls %d, want 1", *calls)
	}
}

func TestBadAllowlist(t *testing.T) {
	s := newTestServer(primarySnapshot(t), ServerConfig{Allowlist: []string{"10.0.0.0/33"}})
	if _, err := s.prepare(context.Background()); err == nil || !strings.Contains(err.Error(), "restapi.allowlist") {
		t.Errorf("prepare with a bad network: %v", err)
	}
}
