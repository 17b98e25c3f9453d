//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/testkit/poll"
	"github.com/custos-ha/custos/testkit/servers"
)

// TestFailsafe, in the spirit of Patroni's dcs_failsafe_mode feature
// (see docs/fencing.md), on an etcd of its own that the test kills: with
// failsafe_mode on, a healthy three-member cluster keeps its primary
// writable while the DCS is down, because every member listed in /failsafe
// acknowledges it; with one replica also down, the primary demotes; with
// the DCS back the cluster heals with one primary and every commit
// acknowledged during the outage.
func TestFailsafe(t *testing.T) {
	t.Parallel()
	d := newEtcdDCS(t)
	c := startCluster(t, clusterOpts{dcs: d, timings: shortTimings, bootstrapDCS: []string{"failsafe_mode = true"}})
	tm := c.timings()
	primary := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	c.waitFailsafe(t)
	acked := 0
	insert := func() error {
		if _, err := primary.query("insert into e2e (note) values ('failsafe')"); err != nil {
			return err
		}
		acked++
		return nil
	}

	step(t, "the primary stays writable while the DCS is down", func(t *testing.T) {
		offset := primary.logSize()
		d.srv.Kill()
		// Past the leader key's TTL and several loops: the primary would
		// have demoted long ago without failsafe mode.
		holdsFor(t, primary.name+" to stay a writable primary", 3*tm.ttlDuration(), insert)
		active := false
		for _, cy := range primary.cyclesSince(offset) {
			active = active || strings.Contains(cy.reason, "failsafe mode active")
		}
		if !active {
			t.Errorf("%s never said failsafe mode was active:\n%s", primary.name, strings.Join(primary.logSince(offset), "\n"))
		}
		if st := mustStatus(t, primary); !strings.Contains(st.raw, `"failsafe_mode_is_active":true`) {
			t.Errorf("%s: /patroni does not say failsafe_mode_is_active: %s", primary.name, st.raw)
		}
		for _, r := range c.others(primary) {
			if ok, err := r.writable(); err != nil || ok {
				t.Errorf("%s: writable %v (%v) while the DCS is down", r.name, ok, err)
			}
			// The primary's POST /failsafe reaches them.
			if st := mustStatus(t, r); !strings.Contains(st.raw, `"failsafe_mode_is_active":true`) {
				t.Errorf("%s: /patroni does not say failsafe_mode_is_active: %s", r.name, st.raw)
			}
		}
	})

	gone := c.others(primary)[0]
	step(t, "the primary demotes when a replica is also down", func(t *testing.T) {
		gone.kill(t, agentOnly, syscall.SIGTERM)
		gone.waitExit(t, stopTimeout)
		poll.Eventually(t, failoverTimeout, primary.name+" to stop accepting writes", func() error {
			if ok, err := primary.writable(); err == nil && ok {
				return fmt.Errorf("%s accepts writes", primary.name)
			}
			return nil
		})

		// And nobody else does, without the DCS.
		holdsFor(t, "no primary without the DCS", tm.ttlDuration(), func() error {
			for _, m := range c.m {
				if ok, err := m.writable(); err == nil && ok {
					return fmt.Errorf("%s accepts writes", m.name)
				}
			}
			return nil
		})
	})

	step(t, "the cluster heals with the DCS back", func(t *testing.T) {
		if err := d.srv.Restart(); err != nil {
			t.Fatal(err)
		}
		gone.restart(t)
		leader := c.waitHealthy(t, formTimeout)
		t.Logf("%s leads after the outage; %d commits were acknowledged during it", leader.name, acked)
		// Every commit the primary acknowledged while the DCS was down is
		// on the primary of the healed cluster.
		poll.Eventually(t, opTimeout, "the outage's commits on "+leader.name, func() error {
			v, err := leader.query("select count(*) from e2e where note = 'failsafe'")
			if err != nil {
				return err
			}
			if len(v) != 1 || v[0] != fmt.Sprint(acked) {
				return fmt.Errorf("%v rows, %d acknowledged", v, acked)
			}
			return nil
		})

		leader.exec(t, "insert into e2e (note) values ('healed')")
		for _, m := range c.others(leader) {
			m.waitRow(t, "healed", opTimeout)
		}
	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// waitFailsafe waits until /failsafe lists every member with its REST
// API's /patroni URL.
func (c *testCluster) waitFailsafe(t testing.TB) {
	t.Helper()
	var want []string
	for _, m := range c.m {
		want = append(want, m.name)
	}
	sort.Strings(want)
	poll.Eventually(t, opTimeout, "/failsafe to list every member", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		var fs map[string]string
		if kv := v.kv["failsafe"]; kv == nil || json.Unmarshal([]byte(kv.Value), &fs) != nil {
			return fmt.Errorf("no /failsafe")
		}
		var names []string
		for n := range fs {
			names = append(names, n)
		}
		sort.Strings(names)
		if strings.Join(names, ",") != strings.Join(want, ",") {
			return fmt.Errorf("/failsafe %v", fs)
		}
		for _, m := range c.m {
			if want := fmt.Sprintf("http://127.0.0.1:%d/patroni", m.apiPort); fs[m.name] != want {
				return fmt.Errorf("/failsafe %s = %q, want %q", m.name, fs[m.name], want)
			}
		}
		return nil
	})

}

// TestFailsafeEtcdFrozen: failsafe_mode on, and the DCS hangs instead of
// refusing: etcd is frozen (SIGSTOP) for twice the ttl, so that calls hang
// and streams end in resets or deadlines, then thawed. The primary takes
// every write throughout (a commit does not touch the DCS, so none may
// fail), its GET /primary answers 200 at every poll (a load balancer keeps
// sending clients to it), and no other member takes a write at any time;
// after the thaw the cluster is healthy with the same primary.
func TestFailsafeEtcdFrozen(t *testing.T) {
	t.Parallel()
	d := newEtcdDCS(t)
	c := startCluster(t, clusterOpts{dcs: d, timings: shortTimings, bootstrapDCS: []string{"failsafe_mode = true"}, pgParameters: fencingParameters})
	// The agents stop against a running etcd (this clean-up runs before
	// startCluster's).
	t.Cleanup(func() { _ = d.srv.Thaw() })
	tm := c.timings()
	primary := c.waitFormed(t)
	c.waitFailsafe(t)
	in := c.instrument(t, primary, coarsePace)
	w, s := in.w, in.s
	rp := pollREST(t, primary, "/primary", 100*time.Millisecond)

	if err := d.srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	// The fault lasts twice the ttl: the leader key's lease runs out in
	// it, and every loop of every member meets the hanging DCS.
	time.Sleep(2 * tm.ttlDuration())
	if err := d.srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	var healthy time.Time
	// Measured at the end, also when a wait below fails.
	defer func() {
		in.stop()
		rp.stop()
		// Every commit acknowledged, by the one primary, also after its
		// lease ran out.
		acks := w.acks()
		late := 0
		for _, a := range acks {
			if a.member != primary.name {
				t.Errorf("commit %d acknowledged by %s, not the primary %s", a.id, a.member, primary.name)
				break
			}
			if a.at.After(frozen.Add(tm.ttlDuration())) && a.at.Before(thawed) {
				late++
			}
		}
		if n := w.failures(); n > 0 {
			t.Errorf("%d commits failed; last: %v", n, w.lastError())
		}
		if late == 0 {
			t.Errorf("no commit was acknowledged between the lease's expiry (%s) and the thaw (%s)", since(frozen, frozen.Add(tm.ttlDuration())), since(frozen, thawed))
		}
		// GET /primary, from the freeze until the end.
		answers, refused := 0, 0
		var first, last restAnswer
		var slowest time.Duration
		for _, a := range rp.snapshot() {
			if a.at.Before(frozen) {
				continue
			}
			answers++
			slowest = max(slowest, a.took)
			if a.err != nil || a.code != 200 {
				if refused == 0 {
					first = a
				}
				last = a
				refused++
			}
		}
		if refused > 0 {
			t.Errorf("GET /primary on %s was not 200 in %d of %d polls, from %s (%s) to %s (%s)", primary.name, refused, answers,
				since(frozen, first.at), first.summary(), since(frozen, last.at), last.summary())
		}
		// Nobody else took a write.
		for _, m := range c.others(primary) {
			if spans := s.writable(m.name); len(spans) > 0 {
				t.Errorf("%s took writes from %s for %v", m.name, since(frozen, spans[0].from), spans[0].length().Round(time.Millisecond))
			}
		}
		var keyEvents []string
		for _, e := range in.lw.snapshot() {
			if e.deleted {
				keyEvents = append(keyEvents, fmt.Sprintf("%s's leader key deleted %s", e.prevValue, since(frozen, e.at)))
			} else {
				keyEvents = append(keyEvents, fmt.Sprintf("leader key set to %s %s", e.value, since(frozen, e.at)))
			}
		}
		t.Logf("etcd frozen for %v (thawed %s), healthy again %s: %d commits acknowledged (%d after the lease ran out, before the thaw), %d failed, slowest commit %v; GET /primary: %d of %d polls not 200, slowest answer %v; %d write samples; %s",
			thawed.Sub(frozen).Round(time.Millisecond), since(frozen, thawed), since(frozen, healthy), len(acks), late, w.failures(), w.slowestCommit().Round(time.Millisecond),
			refused, answers, slowest.Round(time.Millisecond), s.samples(), strings.Join(keyEvents, ", "))
	}()

	if leader := c.waitHealthy(t, formTimeout); leader != primary {
		t.Errorf("%s leads after the thaw; %s did before", leader.name, primary.name)
	}
	healthy = time.Now()
	waitWrites(t, w, s, primary, 100)
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// etcdDCS is an etcd of the test's own, which it may kill and start again.
type etcdDCS struct {
	srv *servers.Etcd
	kv  *clientv3.Client
}

func newEtcdDCS(t *testing.T) *etcdDCS {
	srv, err := servers.StartEtcd(servers.EtcdConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	kv, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	return &etcdDCS{srv: srv, kv: kv}
}

func (d *etcdDCS) section() (string, []string) {
	hosts, _ := json.Marshal([]string{d.srv.Endpoint})
	return "etcd3", []string{"hosts = " + string(hosts)}
}

func (d *etcdDCS) read(ctx context.Context, scope string) (dcsView, error) {
	prefix := "/service/" + scope + "/"
	resp, err := d.kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return dcsView{}, fmt.Errorf("reading %s from etcd: %w", prefix, err)
	}
	v := dcsView{rev: resp.Header.Revision, kv: map[string]*keyValue{}}
	for _, kv := range resp.Kvs {
		v.kv[strings.TrimPrefix(string(kv.Key), prefix)] = &keyValue{
			Value: string(kv.Value), Lease: kv.Lease, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision,
		}
	}
	return v, nil
}
