package sim

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// The run alternates stormy and calm periods: injections of faults and
// operator requests for a while, then everything heals and the cluster must
// converge to one healthy leader within a bound. The injections form a
// schedule: drawn from the seed (a stream of its own, so that the schedule
// does not depend on what the cluster does), or read from a scenario file,
// and shrunk to a minimal one when a run fails.

// Injection is one entry of a fault schedule.
type Injection struct {
	// At is the time since the start of the run.
	At time.Duration
	// Fault names the fault (faults), or "heal" for the end of a storm.
	Fault string
	// Node is the member it hits; "" the leader at that moment (a random
	// member when there is none).
	Node string
	// Other is the second member of a cut between two members, or the
	// candidate of a switchover ("" for none).
	Other string
	// For is how long the fault lasts.
	For time.Duration
	// Latency is the slowness of a slow DCS.
	Latency time.Duration
}

// fault is one kind of fault: it applies itself and returns false when it
// does not apply to the world as it is.
type fault struct {
	name string
	// unguarded: it leaves a primary running without a working agent;
	// only a watchdog stops it then.
	unguarded bool
	// two: it names a second member (Injection.Other).
	two   bool
	apply func(w *World, in Injection, n *node, until time.Time) bool
}

var faults = []fault{
	{name: "crash", apply: func(w *World, _ Injection, n *node, until time.Time) bool {
		if n.down {
			return false
		}
		w.crashNode(n)
		w.at(until, func() { w.bootNode(n) })
		return true
	}},
	{name: "kill-postmaster", apply: func(w *World, _ Injection, n *node, _ time.Time) bool {
		if !n.pg.running {
			return false
		}
		w.crashPostgres(n)
		return true
	}},
	{name: "kill-agent", unguarded: true, apply: func(w *World, _ Injection, n *node, until time.Time) bool {
		if n.agent == nil {
			return false
		}
		n.agent.kill()
		w.at(until, func() {
			if !n.down && n.agent == nil {
				w.startAgent(n)
			}
		})
		return true
	}},
	{name: "freeze-agent", unguarded: true, apply: func(w *World, _ Injection, n *node, until time.Time) bool {
		a := n.agent
		if a == nil || a.frozen {
			return false
		}
		a.freeze()
		w.at(until, func() {
			if !a.dead && a.frozen {
				w.tracef("%s: agent thawed", n.name)
				a.thaw()
			}
		})
		return true
	}},
	{name: "cut-dcs", apply: func(w *World, _ Injection, n *node, until time.Time) bool {
		w.cutDCS[n.name] = true
		w.at(until, func() { delete(w.cutDCS, n.name) })
		return true
	}},
	{name: "cut", two: true, apply: func(w *World, in Injection, n *node, until time.Time) bool {
		o := w.node(in.Other)
		if o == nil || o == n {
			return false
		}
		p := pair(n.name, o.name)
		w.cut[p] = true
		w.at(until, func() { delete(w.cut, p) })
		return true
	}},
	{name: "lose-dcs-answers", apply: func(w *World, _ Injection, n *node, until time.Time) bool {
		// An asymmetric cut: the member's requests reach the DCS (and
		// are applied), its answers are lost.
		w.lostAnswers[n.name] = true
		w.at(until, func() { delete(w.lostAnswers, n.name) })
		return true
	}},
	{name: "dcs-minority", apply: func(w *World, _ Injection, n *node, until time.Time) bool {
		// The member's DCS server is cut from the DCS majority: it
		// still answers reads, writes (a renewal too) never commit.
		w.minority[n.name] = true
		w.at(until, func() { delete(w.minority, n.name) })
		return true
	}},
	{name: "dcs-down", apply: func(w *World, _ Injection, _ *node, until time.Time) bool {
		if w.dcsDown {
			return false
		}
		w.dcsDown = true
		w.at(until, w.dcsUp)
		return true
	}},
	{name: "slow-dcs", apply: func(w *World, in Injection, n *node, until time.Time) bool {
		w.slow[n.name] = in.Latency
		w.at(until, func() { delete(w.slow, n.name) })
		return true
	}},
	{name: "switchover", two: true, apply: func(w *World, in Injection, _ *node, _ time.Time) bool {
		if w.dcsDown {
			return false
		}
		w.dcs.expire(w.now)
		if w.dcs.leader == nil {
			return false
		}
		f := &cluster.Failover{Leader: w.dcs.leader.name}
		if in.Other != f.Leader {
			f.Candidate = in.Other
		}
		w.dcs.failover, w.dcs.failVer = f, w.dcs.next()
		w.dcsChanged()
		return true
	}},
	{name: "pause", apply: func(w *World, _ Injection, _ *node, until time.Time) bool {
		if w.dcsDown || w.dcs.config == nil || w.dcs.config.Paused {
			return false
		}
		w.setPaused(true)
		w.at(until, w.resume)
		return true
	}},
}

func faultNamed(name string) (fault, bool) {
	for _, f := range faults {
		if f.name == name {
			return f, true
		}
	}
	return fault{}, false
}

// storm draws the injections of one storm starting at start (since the
// start of the run), the heal that ends it last.
func (w *World) storm(start time.Duration) []Injection {
	r := w.plan
	end := start + dur(r, 30*time.Second, 3*time.Minute)
	var out []Injection
	for at := start; at < end; at += dur(r, time.Second, 10*time.Second) {
		f := faults[r.IntN(len(faults))]
		in := Injection{At: at, Fault: f.name, For: dur(r, time.Second, time.Minute)}
		if r.IntN(2) == 0 {
			in.Node = w.nodes[r.IntN(len(w.nodes))].name
		}
		if f.two {
			in.Other = w.nodes[r.IntN(len(w.nodes))].name
		}
		if f.name == "slow-dcs" {
			in.Latency = dur(r, 500*time.Millisecond, 8*time.Second)
		}
		out = append(out, in)
	}
	return append(out, Injection{At: end, Fault: "heal"})
}

// dur is a random duration in [lo, hi) from r.
func dur(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// schedule queues the injections; with a drawn schedule, each heal draws
// the next storm, once the cluster had time to converge.
func (w *World) schedule(ins []Injection) {
	for _, in := range ins {
		w.at(w.start.Add(in.At), func() { w.inject(in) })
	}
}

// inject applies one injection (skipped when it does not apply, or when
// it is unguarded and nothing would guard the primary: no watchdog, or a
// paused cluster whose watchdogs are disarmed, as with Patroni).
func (w *World) inject(in Injection) {
	if in.Fault == "heal" {
		w.injected = append(w.injected, in)
		w.heal()
		if w.opt.Schedule == nil {
			next := w.now.Sub(w.start) + w.convergeBound() + dur(w.plan, 10*time.Second, time.Minute)
			w.schedule(w.storm(next))
		}
		return
	}
	f, ok := faultNamed(in.Fault)
	if !ok {
		w.fail("unknown fault %q", in.Fault)
		return
	}
	if f.unguarded && (!w.opt.Watchdog || w.paused()) {
		return
	}
	n := w.node(in.Node)
	if in.Node == "" {
		if w.dcs.leader != nil {
			n = w.node(w.dcs.leader.name)
		} else {
			n = w.nodes[w.plan.IntN(len(w.nodes))]
		}
	}
	if n == nil {
		w.fail("fault %s on unknown member %q", in.Fault, in.Node)
		return
	}
	if f.apply(w, in, n, w.now.Add(in.For)) {
		in.Node = n.name
		w.injected = append(w.injected, in)
		w.tracef("%s", in)
	}
}

func (in Injection) String() string {
	s := fmt.Sprintf("at %s %s", fmtDur(in.At), in.Fault)
	if in.Node != "" {
		s += " " + in.Node
	}
	if in.Other != "" {
		s += " " + in.Other
	}
	if in.Latency > 0 {
		s += " latency " + fmtDur(in.Latency)
	}
	if in.Fault != "heal" && in.Fault != "kill-postmaster" && in.Fault != "switchover" {
		s += " for " + fmtDur(in.For)
	}
	return s
}

// fmtDur prints a duration to the millisecond.
func fmtDur(d time.Duration) string { return d.Round(time.Millisecond).String() }

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
// (docs/simulation.md).
func (w *World) resume() {
	ready := !w.dcsDown
	w.dcs.expire(w.now)
	for _, n := range w.nodes {
		if n.agent == nil || n.agent.frozen || w.cutDCS[n.name] || w.lostAnswers[n.name] || w.minority[n.name] || w.slow[n.name] > 0 {
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

// heal ends the faults: machines come back, agents run and thaw, the
// network and the DCS work, the cluster is resumed. The cluster then
// has convergeBound to settle.
func (w *World) heal() {
	w.dcsUp()
	clear(w.cutDCS)
	clear(w.lostAnswers)
	clear(w.minority)
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
		w.convergence = append(w.convergence, w.now.Sub(calm))
		return
	} else if w.now.Sub(calm) > w.convergeBound() {
		w.fail("no convergence %s after the faults ended: %s", w.convergeBound(), why)
		return
	}
	w.after(time.Second, func() { w.awaitConvergence(calm) })
}
