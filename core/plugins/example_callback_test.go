//go:build integration

package plugins

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/callbacks"
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/testkit/poll"
)

// TestExampleCallbackPluginKilledDuringDelivery: the example plugin
// (examples/callback-http, built from its source) is killed while it
// posts an event; the agent restarts it and delivers that event again, so
// the endpoint receives every event, in order.
func TestExampleCallbackPluginKilledDuringDelivery(t *testing.T) {
	th := newTestHost(t, nil)
	th.restartStable = 0
	bin := filepath.Join(th.dir, sdk.BinaryPrefix+"callback-http")
	build := exec.Command("go", "build", "-o", bin, "../../examples/callback-http")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example plugin: %v\n%s", err, out)
	}

	var (
		mu      sync.Mutex
		posted  []uint64
		blocked = make(chan struct{})
		release = make(chan struct{})
		once    sync.Once
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		first := false
		if ev.Seq == 3 {
			once.Do(func() { first = true })
		}
		if first {
			// The first post of event 3 hangs until its plugin is killed.
			close(blocked)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		posted = append(posted, ev.Seq)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	ctx := context.Background()
	s, err := th.OpenCallback(ctx, "http")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	section, _ := json.Marshal(map[string]string{"url": srv.URL})
	if err := s.Validate(ctx, section); err != nil {
		t.Fatal(err)
	}
	d, err := callbacks.NewDispatcher(callbacks.Options{Scope: "demo", Member: "m1", Logger: th.logger},
		callbacks.Sink{Name: "http", Receiver: s, Config: section, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		d.Emit(callback.ActionRoleChange, callback.RolePrimary)
	}
	select {
	case <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("event 3 never reached the endpoint")
	}
	pid := s.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, "every event posted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posted) >= 5
	})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Close(cctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(posted, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("the endpoint received %v, want 1..5 once each, in order", posted)
	}
	if s.Pid() == pid || s.Restarts() < 1 {
		t.Errorf("the plugin was not restarted (pid %d, restarts %d)", s.Pid(), s.Restarts())
	}
}
