package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/callback/callbacktest"
)

// hook is a test endpoint: /ok records each event it is posted and
// answers 204, /block answers only once the request is abandoned, /fail
// answers 500. It is a real HTTP server on loopback.
type hook struct {
	*httptest.Server
	done chan struct{} // closed when the test ends: /block gives up

	mu       sync.Mutex
	events   []callback.Event
	requests []seenRequest
}

// seenRequest is what the hook keeps of a request it recorded.
type seenRequest struct {
	host   string
	header http.Header
	body   []byte
}

func newHook(t *testing.T) *hook {
	t.Helper()
	h := &hook{done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ok", h.ok)
	mux.HandleFunc("POST /block", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-h.done:
		}
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "hook is down\nsecond line", http.StatusInternalServerError)
	})
	h.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(h.done)
		h.Close()
	})
	return h
}

// ok records the event, decoding the body strictly: a body with a field
// missing or unknown is answered 400 and not recorded.
func (h *hook) ok(w http.ResponseWriter, r *http.Request) {
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw.Bytes(), &fields); err != nil || len(fields) != 6 {
		http.Error(w, fmt.Sprintf("want an object of 6 fields, got %s", raw.Bytes()), http.StatusBadRequest)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw.Bytes()))
	dec.DisallowUnknownFields()
	var b body
	if err := dec.Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	at, err := time.Parse(time.RFC3339Nano, b.Time)
	if err != nil || at.Location() != time.UTC {
		http.Error(w, fmt.Sprintf("time %q is not RFC 3339 in UTC", b.Time), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, callback.Event{Action: b.Action, Role: b.Role, Scope: b.Scope, Member: b.Member, Seq: b.Seq, Time: at})
	h.requests = append(h.requests, seenRequest{host: r.Host, header: r.Header.Clone(), body: raw.Bytes()})
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hook) observed(*testing.T) []callback.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]callback.Event(nil), h.events...)
}

func (h *hook) lastRequest(t *testing.T) seenRequest {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.requests) == 0 {
		t.Fatal("the hook got no request")
	}
	return h.requests[len(h.requests)-1]
}

// section returns a [callback.http] section posting to path on the hook.
func (h *hook) section(path string) []byte {
	return []byte(fmt.Sprintf(`{"url": %q, "request_timeout": "30s", "headers": {"X-Conformance": "yes"}}`, h.URL+path))
}

// setup is the conformance kit's view of r posting to h.
func (h *hook) setup(r callback.Receiver) callbacktest.Setup {
	return callbacktest.Setup{
		Receiver:    r,
		Config:      h.section("/ok"),
		BlockConfig: h.section("/block"),
		FailConfig:  h.section("/fail"),
		Observed:    h.observed,
	}
}
