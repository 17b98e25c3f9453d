package controller

import (
	"bytes"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/ha"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

// decisions counts a controller's cycles (its "ha cycle" log lines) and its
// calls of Decide, and how many of those had peers' answers or failsafe
// acknowledgements gathered.
type decisions struct {
	mu                     sync.Mutex
	cycles, calls          int
	withPeers, withAcks    int
	waiting, waitedThenGot int
	lastWaited             bool
}

func (d *decisions) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cycles += bytes.Count(p, []byte("ha cycle"))
	return len(p), nil
}

// countDecisions instruments c before it runs.
func countDecisions(c *Controller) *decisions {
	d := &decisions{}
	c.logger = hclog.New(&hclog.LoggerOptions{Output: d, Level: hclog.Info})
	c.decide = func(in ha.Input) ha.Decision {
		dec := ha.Decide(in)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.calls++
		if in.PeersFetched {
			d.withPeers++
		}
		if in.FailsafeChecked {
			d.withAcks++
		}
		if d.lastWaited && (in.PeersFetched || in.FailsafeChecked) {
			d.waitedThenGot++
		}
		d.lastWaited = dec.Waiting
		if dec.Waiting {
			d.waiting++
		}
		return dec
	}
	return d
}

// check fails unless every cycle decided once, after the controller
// stopped.
func (d *decisions) check(t *testing.T, who string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.calls != d.cycles {
		t.Fatalf("%s: %d calls of Decide in %d cycles", who, d.calls, d.cycles)
	}
	if d.waitedThenGot != d.waiting {
		t.Fatalf("%s: %d decisions waited for answers, %d of the cycles after them had them", who, d.waiting, d.waitedThenGot)
	}
}

// The leader race needs the peers' answers: they are gathered after a
// decision asks for them and before the next one, never by a second call
// of Decide in the same cycle.
func TestOneDecisionPerCycleInTheLeaderRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := dcstest.NewMemoryStore()
		defer mem.Stop()
		pg1, pg2 := newFakePG(), newFakePG()
		peers := fakePeers{"pg1": pg1, "pg2": pg2}
		c1 := newControllerWithPeers(t, mem, "pg1", pg1, peers)
		d1 := countDecisions(c1)
		stop1 := run(c1)
		eventually(t, "pg1 bootstraps and leads", func() bool {
			m := read(t, mem).Member("pg1")
			return read(t, mem).LeaderName() == "pg1" && m != nil && m.State == "running"
		})
		c2 := newControllerWithPeers(t, mem, "pg2", pg2, peers)
		d2 := countDecisions(c2)
		stop2 := run(c2)
		eventually(t, "pg2 follows pg1", func() bool {
			m := read(t, mem).Member("pg2")
			return m != nil && m.State == "running" && c2.State().Observation.HA.Upstream == "pg1"
		})
		stop1()
		eventually(t, "pg2 wins the race", func() bool { return read(t, mem).LeaderName() == "pg2" })
		stop2()
		d1.check(t, "pg1")
		d2.check(t, "pg2")
		if d2.withPeers == 0 {
			t.Fatal("pg2 took the leader key without asking the peers")
		}
	})
}

// A primary kept by failsafe mode asks the members before each decision
// while the DCS stays away, one decision a cycle.
func TestOneDecisionPerCycleInFailsafeMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b, _ := newFailsafeLeader(t)
		d := countDecisions(c)
		stop := run(c)
		eventually(t, "the DCS to go down after /failsafe was written", b.isDown)
		time.Sleep(40 * time.Second)
		stop()
		d.check(t, "pg1")
		if d.withAcks < 5 {
			t.Fatalf("%d decisions with failsafe acknowledgements in 40 s of failsafe mode", d.withAcks)
		}
	})
}
