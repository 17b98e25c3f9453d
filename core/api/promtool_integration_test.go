//go:build integration

package api

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// TestPromtoolCheckMetrics runs Prometheus's own linter on real scrapes of
// a served /metrics, as the acceptance requires.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install the Debian package prometheus (apt-get install prometheus)")
	}
	stopped := &Snapshot{Status: Status{State: StateStopped, Role: "replica", Patroni: Agent{Version: "0.1.0", Scope: "demo", Name: "n"}}}
	for name, snap := range map[string]*Snapshot{"primary": primarySnapshot(t), "replica": replicaSnapshot(t), "stopped": stopped} {
		t.Run(name, func(t *testing.T) {
			addr := serve(t, newTestServer(snap, ServerConfig{}))
			client := &http.Client{Timeout: ioTimeout}
			resp, err := client.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
			}
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = bytes.NewReader(body)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.WaitDelay = time.Second
			if err := cmd.Run(); err != nil {
				t.Errorf("promtool check metrics: %v\n%s\nscrape:\n%s", err, out.String(), body)
			}
		})
	}
}
