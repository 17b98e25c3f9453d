package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHealthPrimary measures the handler of the hottest request, a
// load balancer's GET /primary, on a published snapshot.
func BenchmarkHealthPrimary(b *testing.B) {
	s := newTestServer(primarySnapshot(b), ServerConfig{})
	req := httptest.NewRequest(http.MethodGet, "/primary", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET /primary = %d", rec.Code)
		}
	}
}

// BenchmarkHealthReplicaLag adds query parsing (?lag= and a tag filter).
func BenchmarkHealthReplicaLag(b *testing.B) {
	s := newTestServer(replicaSnapshot(b), ServerConfig{})
	req := httptest.NewRequest(http.MethodGet, "/replica?lag=1MB&tag_zone=b", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET /replica = %d", rec.Code)
		}
	}
}

// BenchmarkHealthPrimaryHTTP is the same check over a real connection
// (kept alive) through net/http.
func BenchmarkHealthPrimaryHTTP(b *testing.B) {
	srv := httptest.NewServer(newTestServer(primarySnapshot(b), ServerConfig{}))
	defer srv.Close()
	client := srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(srv.URL + "/primary")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /primary = %d", resp.StatusCode)
		}
	}
}
