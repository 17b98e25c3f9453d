//go:build integration

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugins/dcs-etcd3/etcd3"
	"github.com/custos-ha/custos/testkit/servers"
)

// The frozen-member tests do not run in parallel with the package's other
// tests: they measure etcd elections, which a loaded machine slows down.

// Timing of the frozen-member tests: Patroni's rule loop_wait + 2 x
// retry_timeout <= ttl holds, and etcd runs with the chaos suite's timing.
const (
	frozenRetry    = 4 * time.Second
	frozenTTL      = 10 * time.Second
	frozenLoopWait = time.Second
	frozenFor      = 15 * time.Second
)

// startFrozenCluster starts a three-member etcd cluster for one test and
// thaws every member at the end.
func startFrozenCluster(t *testing.T) *servers.EtcdCluster {
	t.Helper()
	c, err := servers.StartEtcdCluster(servers.EtcdConfig{
		Heartbeat: 100 * time.Millisecond, Election: time.Second,
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			_ = m.Thaw()
		}
		c.Stop()
	})
	return c
}

// configureCluster configures a backend with every member of c.
func configureCluster(t *testing.T, c *servers.EtcdCluster, ns, member string) *etcd3.Backend {
	t.Helper()
	hosts, err := json.Marshal(c.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	b := etcd3.New(testLogger())
	err = b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: "pg", Namespace: ns, Member: member, TTL: frozenTTL, RetryTimeout: frozenRetry,
		Config: []byte(fmt.Sprintf(`{"hosts": %s}`, hosts)),
	})
	if err != nil {
		t.Fatalf("configuring %s: %v", member, err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// cycle is a primary's work in one loop: read the cluster, renew the
// leader key, write the member key and a cluster-wide key with a compare
// and without. Each call's duration and error are passed to check.
type cycle struct {
	b       *etcd3.Backend
	version string // of the config key
	n       int
}

type callResult struct {
	op    string
	start time.Time
	d     time.Duration
	err   error
}

func (c *cycle) run(ctx context.Context) []callResult {
	c.n++
	var out []callResult
	call := func(op string, fn func(ctx context.Context) error) {
		start := time.Now()
		err := fn(ctx)
		out = append(out, callResult{op, start, time.Since(start), err})
	}
	call("GetCluster", func(ctx context.Context) error {
		cl, err := c.b.GetCluster(ctx)
		if err == nil && (cl.Leader == nil || cl.Leader.Name != "primary") {
			return fmt.Errorf("leader key %+v, want primary's", cl.Leader)
		}
		return err
	})
	call("RenewLeader", func(ctx context.Context) error { return c.b.RenewLeader(ctx) })
	call("TouchMember", func(ctx context.Context) error {
		return c.b.TouchMember(ctx, []byte(`{"cycle":`+strconv.Itoa(c.n)+`}`))
	})
	call("CompareAndSet", func(ctx context.Context) error {
		v, err := c.b.CompareAndSet(ctx, dcs.KeyConfig, []byte(`{"cycle":`+strconv.Itoa(c.n)+`}`), c.version)
		if err == nil {
			c.version = v
		}
		return err
	})
	call("Set", func(ctx context.Context) error {
		return c.b.Set(ctx, dcs.KeyStatus, []byte(`{"optime":`+strconv.Itoa(c.n)+`}`))
	})
	return out
}

// TestFrozenMember freezes one etcd member (the etcd leader, then in
// another cluster a follower) for 15 s while a primary runs its cycle
// against all three: every call must succeed within retry_timeout through
// the other two.
func TestFrozenMember(t *testing.T) {
	for _, which := range []string{"leader", "follower"} {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			c := startFrozenCluster(t)
			b := configureCluster(t, c, uniqueNamespace(t), "primary")
			ctx := ctxT(t)
			if _, err := b.AcquireLeader(ctx); err != nil {
				t.Fatal(err)
			}
			cy := &cycle{b: b}
			for _, r := range cy.run(ctx) {
				if r.err != nil {
					t.Fatalf("before the freeze: %s: %v", r.op, r.err)
				}
			}
			lead := c.Leader(ctx, 2*time.Second)
			if lead < 0 {
				t.Fatal("no etcd leader")
			}
			victim := lead
			if which == "follower" {
				victim = (lead + 1) % len(c.Members)
			}
			if err := c.Members[victim].Freeze(); err != nil {
				t.Fatal(err)
			}
			frozenAt := time.Now()
			worst := map[string]time.Duration{}
			cycles := 0
			for time.Since(frozenAt) < frozenFor {
				cctx, cancel := context.WithTimeout(context.Background(), 3*frozenRetry)
				for _, r := range cy.run(cctx) {
					worst[r.op] = max(worst[r.op], r.d)
					if r.err != nil {
						t.Errorf("%.1fs into the freeze: %s failed after %v: %v", time.Since(frozenAt).Seconds(), r.op, r.d.Round(time.Millisecond), r.err)
					} else if r.d > frozenRetry {
						t.Errorf("%.1fs into the freeze: %s took %v, more than retry_timeout", time.Since(frozenAt).Seconds(), r.op, r.d.Round(time.Millisecond))
					}
				}
				cancel()
				cycles++
				time.Sleep(frozenLoopWait)
			}
			if err := c.Members[victim].Thaw(); err != nil {
				t.Fatal(err)
			}
			t.Logf("etcd %s frozen %v: %d cycles, slowest calls %v", which, frozenFor, cycles, worst)
			actx, cancel := context.WithTimeout(context.Background(), 3*frozenRetry)
			defer cancel()
			for _, r := range cy.run(actx) {
				if r.err != nil {
					t.Errorf("after the thaw: %s: %v", r.op, r.err)
				}
			}
		})
	}
}

// TestFrozenMajority freezes two of three etcd members: once etcd's last
// member noticed it has no leader, every call fails with ErrUnavailable,
// each within retry_timeout.
func TestFrozenMajority(t *testing.T) {
	c := startFrozenCluster(t)
	b := configureCluster(t, c, uniqueNamespace(t), "primary")
	ctx := ctxT(t)
	if _, err := b.AcquireLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cy := &cycle{b: b}
	for _, r := range cy.run(ctx) {
		if r.err != nil {
			t.Fatalf("before the freeze: %s: %v", r.op, r.err)
		}
	}
	lead := c.Leader(ctx, 2*time.Second)
	if lead < 0 {
		t.Fatal("no etcd leader")
	}
	for _, i := range []int{lead, (lead + 1) % len(c.Members)} {
		if err := c.Members[i].Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	frozenAt := time.Now()
	// Calls finished in the first seconds may still succeed: the remaining
	// member answers progress requests on its watch until it notices it
	// has no leader, and a request may commit just before the freeze.
	const settle = 3 * time.Second
	slack := 500 * time.Millisecond
	failed := 0
	for time.Since(frozenAt) < 12*time.Second {
		cctx, cancel := context.WithTimeout(context.Background(), 3*frozenRetry)
		for _, r := range cy.run(cctx) {
			if r.d > frozenRetry+slack {
				t.Errorf("%.1fs into the freeze: %s took %v, more than retry_timeout", time.Since(frozenAt).Seconds(), r.op, r.d.Round(time.Millisecond))
			}
			if r.start.Sub(frozenAt) < settle {
				continue
			}
			if !errors.Is(r.err, dcs.ErrUnavailable) {
				t.Errorf("%.1fs into the freeze: %s returned %v, want ErrUnavailable", time.Since(frozenAt).Seconds(), r.op, r.err)
				continue
			}
			failed++
		}
		cancel()
	}
	if failed == 0 {
		t.Error("no call failed with the majority frozen")
	}
	t.Logf("majority frozen 12 s: %d calls failed with ErrUnavailable", failed)
}

// TestFrozenLeaderConcurrentCallers freezes the etcd leader while a
// primary runs its cycle and three other callers (the REST API, say) read
// the cluster at the same time: their requests take turns on the
// balancer's connections, so an attempt after one that hung may be handed
// the frozen member's connection again unless it is dropped.
func TestFrozenLeaderConcurrentCallers(t *testing.T) {
	c := startFrozenCluster(t)
	b := configureCluster(t, c, uniqueNamespace(t), "primary")
	ctx := ctxT(t)
	if _, err := b.AcquireLeader(ctx); err != nil {
		t.Fatal(err)
	}
	lead := c.Leader(ctx, 2*time.Second)
	if lead < 0 {
		t.Fatal("no etcd leader")
	}
	if err := c.Members[lead].Freeze(); err != nil {
		t.Fatal(err)
	}
	frozenAt := time.Now()
	var mu sync.Mutex
	calls := 0
	var worst time.Duration
	check := func(rs []callResult) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rs {
			calls++
			worst = max(worst, r.d)
			if r.err != nil {
				t.Errorf("%.1fs into the freeze: %s failed after %v: %v", r.start.Sub(frozenAt).Seconds(), r.op, r.d.Round(time.Millisecond), r.err)
			} else if r.d > frozenRetry {
				t.Errorf("%.1fs into the freeze: %s took %v, more than retry_timeout", r.start.Sub(frozenAt).Seconds(), r.op, r.d.Round(time.Millisecond))
			}
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		cy := &cycle{b: b}
		for time.Since(frozenAt) < frozenFor {
			cctx, cancel := context.WithTimeout(context.Background(), 3*frozenRetry)
			check(cy.run(cctx))
			cancel()
			time.Sleep(frozenLoopWait)
		}
	})
	for range 3 {
		wg.Go(func() {
			for time.Since(frozenAt) < frozenFor {
				cctx, cancel := context.WithTimeout(context.Background(), 3*frozenRetry)
				start := time.Now()
				_, err := b.GetCluster(cctx)
				cancel()
				check([]callResult{{"GetCluster (reader)", start, time.Since(start), err}})
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	t.Logf("etcd leader frozen %v, four callers: %d calls, slowest %v", frozenFor, calls, worst)
}
