package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/callback/callbacktest"
)

func testLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: os.Stderr})
}

// TestConformance runs the SDK's kit against the receiver in process,
// posting to a real HTTP server.
func TestConformance(t *testing.T) {
	callbacktest.RunConformance(t, func(t *testing.T) callbacktest.Setup {
		return newHook(t).setup(NewReceiver(testLogger()))
	})
}

// problemPaths returns the key paths of a *sdk.ConfigError, sorted.
func problemPaths(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("want *sdk.ConfigError, got %T %v", err, err)
	}
	var paths []string
	for _, p := range cfgErr.Problems {
		paths = append(paths, p.Path)
	}
	slices.Sort(paths)
	return paths
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		section string
		paths   []string // key paths of the problems; nil: valid
	}{
		{`{"url": "http://127.0.0.1:8080/hook"}`, nil},
		{`{"url": "https://u:p@hooks.example.com/x?a=b", "request_timeout": "2s", "headers": {"Authorization": "Bearer t", "host": "h.example"}}`, nil},
		{`{"url": "http://h", "request_timeout": 5, "headers": {}}`, nil},
		{`{}`, []string{"url"}},
		{``, []string{"url"}},
		{`{"url": 5}`, []string{"url"}},
		{`{"url": ""}`, []string{"url"}},
		{`{"url": "ftp://h/x"}`, []string{"url"}},
		{`{"url": "/relative"}`, []string{"url"}},
		{`{"url": "http:///nohost"}`, []string{"url"}},
		{`{"url": "http://h/#frag"}`, []string{"url"}},
		{`{"url": "http://h", "request_timeout": "0s"}`, []string{"request_timeout"}},
		{`{"url": "http://h", "request_timeout": "soon"}`, []string{"request_timeout"}},
		{`{"url": "http://h", "headers": "X-A: b"}`, []string{"headers"}},
		{`{"url": "http://h", "headers": {"X-A": 1}}`, []string{"headers.X-A"}},
		{`{"url": "http://h", "headers": {"X A": "b"}}`, []string{"headers.X A"}},
		{`{"url": "http://h", "headers": {"X-A": "b\r\nX-Evil: 1"}}`, []string{"headers.X-A"}},
		{`{"url": "http://h", "headers": {"content-length": "5"}}`, []string{"headers.content-length"}},
		{`{"url": "http://h", "headers": {"Host": " "}}`, []string{"headers.Host"}},
		{`{"url": "http://h", "headers": {"X-A": "1", "x-a": "2"}}`, []string{"headers.x-a"}},
		{`{"url": "http://h", "retries": 3, "tls": {}}`, []string{"retries", "tls"}},
		{`{"request_timeout": -1, "headers": [], "verbose": true}`, []string{"headers", "request_timeout", "url", "verbose"}},
		{`[1]`, []string{""}},
		{`{not json`, []string{""}},
	} {
		_, err := parseConfig([]byte(tc.section))
		if got := problemPaths(t, err); !slices.Equal(got, tc.paths) {
			t.Errorf("%s: problems at %q, want %q (%v)", tc.section, got, tc.paths, err)
		}
	}
}

func TestConfigErrorsHideSecrets(t *testing.T) {
	_, err := parseConfig([]byte(`{"url": "ftp://user:hunter2@h/x", "headers": {"Authorization": "Bearer hunter2\n"}}`))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows a secret or is missing: %v", err)
	}
}

func TestPostsTheEvent(t *testing.T) {
	h := newHook(t)
	r := NewReceiver(testLogger())
	ev := callback.Event{
		Action: callback.ActionRoleChange, Role: callback.RolePrimary, Scope: "demo", Member: "node-2", Seq: 12,
		Time: time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.FixedZone("EST", -5*3600)),
	}
	section := fmt.Sprintf(`{"url": %q, "headers": {"authorization": "Bearer t", "Host": "hooks.example"}}`, h.URL+"/ok")
	if err := r.Deliver(context.Background(), []byte(section), ev); err != nil {
		t.Fatal(err)
	}
	req := h.lastRequest(t)
	want := `{"action":"on_role_change","role":"primary","scope":"demo","member":"node-2","seq":12,"time":"2025-06-01T17:00:00.123456789Z"}`
	if string(req.body) != want {
		t.Errorf("body = %s\nwant   %s", req.body, want)
	}
	for k, v := range map[string]string{
		"Content-Type":  "application/json",
		"Authorization": "Bearer t",
		"User-Agent":    binaryName + "/" + version,
	} {
		if got := req.header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if req.host != "hooks.example" {
		t.Errorf("Host = %q, want the section's", req.host)
	}
}

func TestContentTypeFromTheSection(t *testing.T) {
	h := newHook(t)
	r := NewReceiver(testLogger())
	section := fmt.Sprintf(`{"url": %q, "headers": {"Content-Type": "application/vnd.custos+json"}}`, h.URL+"/ok")
	if err := r.Deliver(context.Background(), []byte(section), callbacktest.Events(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	if got := h.lastRequest(t).header.Values("Content-Type"); !slices.Equal(got, []string{"application/vnd.custos+json"}) {
		t.Errorf("Content-Type = %q", got)
	}
}

// TestFailureNamesTheAnswer: a non-2xx answer is the event's failure,
// naming the status and the answer's first line, never the URL's password.
func TestFailureNamesTheAnswer(t *testing.T) {
	h := newHook(t)
	r := NewReceiver(testLogger())
	url := strings.Replace(h.URL, "http://", "http://user:hunter2@", 1) + "/fail"
	err := r.Deliver(context.Background(), []byte(fmt.Sprintf(`{"url": %q}`, url)), callbacktest.Events(1, 1)[0])
	if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error: hook is down") || strings.Contains(err.Error(), "second line") {
		t.Errorf("error = %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	h := newHook(t)
	redirect := httptest.NewServer(http.RedirectHandler(h.URL+"/ok", http.StatusFound))
	defer redirect.Close()
	r := NewReceiver(testLogger())
	err := r.Deliver(context.Background(), []byte(fmt.Sprintf(`{"url": %q}`, redirect.URL)), callbacktest.Events(1, 1)[0])
	if err == nil || !strings.Contains(err.Error(), "302 Found") || !strings.Contains(err.Error(), "redirects are not followed") {
		t.Errorf("error = %v", err)
	}
	if got := h.observed(t); len(got) != 0 {
		t.Errorf("the redirect target got %+v", got)
	}
}

// TestTimeoutKey: the section's timeout ends a POST the endpoint does not
// answer, as a failure rather than the agent's own deadline.
func TestTimeoutKey(t *testing.T) {
	h := newHook(t)
	r := NewReceiver(testLogger())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err := r.Deliver(ctx, []byte(fmt.Sprintf(`{"url": %q, "request_timeout": "200ms"}`, h.URL+"/block")), callbacktest.Events(1, 1)[0])
	if err == nil || !strings.Contains(err.Error(), "no answer within the request_timeout of 200ms") {
		t.Errorf("error = %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("the section's timeout reads as a context error: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the POST took %v with a timeout of 200ms", took)
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	h := newHook(t)
	url := h.URL + "/ok"
	h.Close() // nothing listens there any more
	r := NewReceiver(testLogger())
	err := r.Deliver(context.Background(), []byte(fmt.Sprintf(`{"url": %q}`, url)), callbacktest.Events(1, 1)[0])
	if err == nil || !strings.Contains(err.Error(), "posting event 1 to "+url) {
		t.Errorf("error = %v", err)
	}
}
