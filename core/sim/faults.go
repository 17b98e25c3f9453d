package sim

import (
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// The run alternates stormy and calm periods: faults and operator
// requests for a while, then everything heals and the cluster must
// converge to one healthy leader within a bound.

// chaos starts a stormy period.
func (w *World) chaos() {
	w.faulting = true
	end := w.now.Add(w.duration(30*time.Second, 3*time.Minute))
	w.tracef("faults begin")
	w.inject(end)
}

// fault is one kind of fault: it applies itself and returns false when it
// does not apply to this world.
type fault struct {
	name string
	// unguarded: it leaves a primary running without a working agent;
	// only a watchdog stops it then.
	unguarded bool
	apply     func(w *World, n *node, until time.Time) bool
}

var faults = []fault{
	{name: "node crash", apply: func(w *World, n *node, until time.Time) bool {
		w.crashNode(n)
		w.at(until, func() { w.bootNode(n) })
		return true
	}},
	{name: "postmaster killed", apply: func(w *World, n *node, _ time.Time) bool {
		if !n.pg.running {
			return false
		}
		w.tracef("%s: postmaster killed", n.name)
		w.crashPostgres(n)
		return true
	}},
	{name: "agent killed", unguarded: true, apply: func(w *World, n *node, until time.Time) bool {
		if n.agent == nil {
			return false
		}
		w.tracef("%s: agent killed", n.name)
		n.agent.kill()
		w.at(until, func() {
			if !n.down && n.agent == nil {
				w.startAgent(n)
			}
		})
		return true
	}},
	{name: "agent frozen", unguarded: true, apply: func(w *World, n *node, until time.Time) bool {
		a := n.agent
		if a == nil || a.frozen {
			return false
		}
		w.tracef("%s: agent frozen", n.name)
		a.freeze()
		w.at(until, func() {
			if !a.dead && a.frozen {
				w.tracef("%s: agent thawed", n.name)
				a.thaw()
			}
		})
		return true
	}},
	{name: "cut from the DCS", apply: func(w *World, n *node, until time.Time) bool {
		w.tracef("%s: cut from the DCS", n.name)
		w.cutDCS[n.name] = true
		w.at(until, func() { delete(w.cutDCS, n.name) })
		return true
	}},
	{name: "cut from a member", apply: func(w *World, n *node, until time.Time) bool {
		o := w.nodes[w.rng.IntN(len(w.nodes))]
		if o == n {
			return false
		}
		p := pair(n.name, o.name)
		w.tracef("%s and %s: cut from each other", n.name, o.name)
		w.cut[p] = true
		w.at(until, func() { delete(w.cut, p) })
		return true
	}},
	{name: "DCS down", apply: func(w *World, _ *node, until time.Time) bool {
		if w.dcsDown {
			return false
		}
		w.tracef("DCS down")
		w.dcsDown = true
		w.at(until, w.dcsUp)
		return true
	}},
	{name: "slow DCS", apply: func(w *World, n *node, until time.Time) bool {
		d := w.duration(500*time.Millisecond, 8*time.Second)
		w.tracef("%s: DCS answers in %s", n.name, d)
		w.slow[n.name] = d
		w.at(until, func() { delete(w.slow, n.name) })
		return true
	}},
	{name: "switchover", apply: func(w *World, _ *node, _ time.Time) bool {
		if w.dcsDown {
			return false
		}
		w.dcs.expire(w.now)
		if w.dcs.leader == nil || w.paused() && !w.fresh(w.dcs.leader.expires) {
			// Paused, a candidate takes a lapsed key without the old
			// primary stepping down: the operator fails over only from
			// a leader that renews its key (docs/reliability.md).
			return false
		}
		f := &cluster.Failover{Leader: w.dcs.leader.name}
		if c := w.nodes[w.rng.IntN(len(w.nodes))]; c.name != f.Leader && w.rng.IntN(2) == 0 {
			f.Candidate = c.name
		}
		w.tracef("operator: switchover from %s to %q", f.Leader, f.Candidate)
		w.dcs.failover, w.dcs.failVer = f, w.dcs.next()
		w.dcsChanged()
		return true
	}},
	{name: "pause", apply: func(w *World, _ *node, until time.Time) bool {
		if w.dcsDown || w.dcs.config == nil || w.dcs.config.Paused {
			return false
		}
		w.tracef("operator: pause")
		w.setPaused(true)
		w.at(until, w.resume)
		return true
	}},
}

// dcsUp ends a DCS outage. The leases live on: etcd and Consul count a
// lease's ttl again from a new raft leader, and ZooKeeper sessions survive
// an outage shorter than their timeout.
func (w *World) dcsUp() {
	if !w.dcsDown {
		return
	}
	w.dcsDown = false
	w.tracef("DCS up")
	if l := w.dcs.leader; l != nil {
		l.expires = w.now.Add(w.opt.TTL)
		w.scheduleExpiry(l.expires)
	}
	for _, m := range w.dcs.members {
		m.expires = w.now.Add(w.opt.TTL)
		w.scheduleExpiry(m.expires)
	}
}

// fresh: a key that expires then was written in the last loop_wait.
func (w *World) fresh(expires time.Time) bool {
	return w.now.Sub(expires.Add(-w.opt.TTL)) <= w.opt.LoopWait+time.Second
}

func (w *World) paused() bool { return w.dcs.config != nil && w.dcs.config.Paused }

// resume is the operator resuming the cluster once the DCS answers and
// every agent runs and reaches it: paused, a primary whose agent died or
// froze has no watchdog armed, and one cut from the DCS keeps running;
// resuming then lets another member take over while it still runs
// (docs/reliability.md).
func (w *World) resume() {
	ready := !w.dcsDown
	w.dcs.expire(w.now)
	for _, n := range w.nodes {
		if n.agent == nil || n.agent.frozen || w.cutDCS[n.name] || w.slow[n.name] > 0 {
			ready = false
		}
		if n.pg.writable(w.now) && (w.dcs.leader == nil || w.dcs.leader.name != n.name || !w.fresh(w.dcs.leader.expires)) {
			// custosctl list shows a running primary that does not hold
			// the leader key, or did not renew it lately: resuming would
			// let another take it.
			ready = false
		}
		if m := w.dcs.members[n.name]; m == nil || !w.fresh(m.expires) {
			ready = false
		}
	}
	if !ready {
		w.after(time.Second, w.resume)
		return
	}
	w.setPaused(false)
}

func (w *World) setPaused(p bool) {
	if w.dcsDown || w.dcs.config == nil || w.dcs.config.Paused == p {
		return
	}
	d := *w.dcs.config
	d.Paused = p
	w.dcs.config, w.dcs.configVer = &d, w.dcs.next()
	if !p {
		w.tracef("operator: resume")
	}
	w.dcsChanged()
}

// inject injects faults until end, then heals.
func (w *World) inject(end time.Time) {
	if !w.now.Before(end) {
		w.heal()
		return
	}
	f := faults[w.rng.IntN(len(faults))]
	n := w.nodes[w.rng.IntN(len(w.nodes))]
	// Paused, the watchdogs are disarmed: nothing would stop the primary
	// of a dead or frozen agent (as with Patroni).
	if !f.unguarded || w.opt.Watchdog && !w.paused() {
		until := w.now.Add(w.duration(time.Second, time.Minute))
		f.apply(w, n, until)
	}
	w.after(w.duration(time.Second, 20*time.Second), func() { w.inject(end) })
}

// heal ends the faults: machines come back, agents run and thaw, the
// network and the DCS work, the cluster is resumed. The cluster then
// has convergeBound to settle.
func (w *World) heal() {
	w.faulting = false
	w.dcsUp()
	clear(w.cutDCS)
	clear(w.cut)
	clear(w.slow)
	for _, n := range w.nodes {
		if n.down {
			w.bootNode(n)
		} else if n.agent == nil {
			w.startAgent(n)
		} else if n.agent.frozen {
			n.agent.thaw()
		}
	}
	w.resume()
	w.calm = w.now
	w.tracef("faults end")
	w.after(time.Second, func() { w.awaitConvergence(w.calm) })
}

// convergeBound is how long a healed cluster may take to have one healthy
// leader and every other member streaming.
func (w *World) convergeBound() time.Duration {
	return 3*w.opt.TTL + 6*w.opt.LoopWait + time.Minute
}

func (w *World) awaitConvergence(calm time.Time) {
	if ok, why := w.converged(); ok {
		w.tracef("converged after %s", w.now.Sub(calm).Round(time.Millisecond))
		w.after(w.duration(10*time.Second, time.Minute), w.chaos)
		return
	} else if w.now.Sub(calm) > w.convergeBound() {
		w.fail("no convergence %s after the faults ended: %s", w.convergeBound(), why)
		return
	}
	w.after(time.Second, func() { w.awaitConvergence(calm) })
}
