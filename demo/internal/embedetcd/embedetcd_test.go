package embedetcd

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

func TestStartServesAndStopReleasesThePort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			s.Stop()
		}
	})
	resp, err := http.Get("http://" + s.Endpoint + "/health")
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		t.Fatalf("GET /health = %d %s", resp.StatusCode, body)
	}

	// A fast request is not logged as slow.
	resp, err = http.Post("http://"+s.Endpoint+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"Lw=="}`))
	if err != nil {
		t.Fatalf("range: %v", err)
	}
	resp.Body.Close()

	s.Stop()
	stopped = true
	if log, err := os.ReadFile(s.LogPath); err != nil || strings.Contains(string(log), "request stats") {
		t.Errorf("etcd log (%v) reports fast requests:\n%s", err, log)
	}
	if c, err := net.DialTimeout("tcp", s.Endpoint, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", s.Endpoint)
	}
}

// A port taken between picking and binding must be told apart from other
// start failures, or Start would not retry.
func TestPortTakenIsRecognised(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ports, err := tkcluster.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := start(ctx, t.TempDir(), l.Addr().(*net.TCPAddr).Port, ports[0])
	if err == nil {
		s.Stop()
		t.Fatal("etcd started on a port that is taken")
	}
	if !isAddrInUse(err) {
		t.Fatalf("isAddrInUse(%v) = false", err)
	}
}
