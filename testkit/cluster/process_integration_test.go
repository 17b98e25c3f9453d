//go:build integration

package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// fakeCluster runs script under sh in place of each agent, with a
// configuration file of the member's name.
func fakeCluster(t *testing.T, members int, script string) *Cluster {
	t.Helper()
	c, err := New(Options{
		Scope: "fake", Members: members, Dir: t.TempDir(), Label: "test",
		Render:  func(m *Member) ([]byte, error) { return []byte(m.Name + "\n"), nil },
		Command: func(m *Member) *exec.Cmd { return exec.Command("/bin/sh", "-c", script) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(time.Second) })
	return c
}

// An agent that ignores SIGTERM is killed with its whole process group
// after the timeout; one that obeys just exits.
func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	c := fakeCluster(t, 2, `trap "" TERM; sleep 600 & wait`)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	stubborn := c.Members[0]
	// The shell has started its sleep once it has a child.
	deadline := time.Now().Add(30 * time.Second)
	var kids []int
	for len(kids) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the shell started no child")
		}
		time.Sleep(20 * time.Millisecond) // polling /proc
		kids = Children(stubborn.PID())
	}
	if err := stubborn.Start(); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second start of a running agent: %v", err)
	}
	if err := c.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		if m.Running() || m.ExitState() == nil {
			t.Errorf("%s still runs after Stop", m.Name)
		}
	}
	for _, k := range kids {
		// SIGKILL is delivered at once but taken a moment later: a
		// loaded machine shows the child still there right after Stop.
		poll.Eventually(t, 10*time.Second, fmt.Sprintf("the agent's child %d gone after Stop", k), func() bool { return !ProcessAlive(k) })
	}
	// The log has the start line; the configuration is the Render's.
	log, _ := os.ReadFile(stubborn.LogPath)
	cfg, _ := os.ReadFile(stubborn.ConfigPath)
	if !strings.Contains(string(log), "=== test: starting the agent (run 1)") || string(cfg) != "node1\n" {
		t.Errorf("log %q, configuration %q", log, cfg)
	}
	// It starts again after it exited.
	if err := stubborn.Start(); err != nil || stubborn.Runs() != 2 {
		t.Fatalf("restart: %v (runs %d)", err, stubborn.Runs())
	}
	stubborn.KillGroup()
	if st := stubborn.ExitState(); st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("after KillGroup: %v", st)
	}
}

// Healthy asks the members' REST APIs: one primary, the others replicas.
func TestHealthyAsksTheRESTAPIs(t *testing.T) {
	c := fakeCluster(t, 3, `sleep 600`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Healthy(ctx); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("agents not started: %v", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	primary := map[string]bool{"node2": true}
	for _, m := range c.Members {
		l, err := net.Listen("tcp", m.APIAddr())
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if (r.URL.Path == "/primary") != primary[m.Name] {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		})}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
	}
	if leader, err := c.Healthy(ctx); err != nil || leader.Name != "node2" {
		t.Errorf("Healthy = %v, %v; want node2", leader, err)
	}
	primary["node3"] = true
	if _, err := c.Healthy(ctx); err == nil || !strings.Contains(err.Error(), "2 members answer 200 on /primary") {
		t.Errorf("two primaries: %v", err)
	}
	primary["node2"], primary["node3"] = false, false
	if _, err := c.Healthy(ctx); err == nil || !strings.Contains(err.Error(), "no member answers 200") {
		t.Errorf("no primary: %v", err)
	}
}
