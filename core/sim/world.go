package sim

import (
	"container/heap"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/ha"
)

// Options describe one simulated cluster and how long to run it.
type Options struct {
	Seed    uint64
	Members int
	// Steps is how many events to run.
	Steps int

	TTL, LoopWait, RetryTimeout time.Duration
	PrimaryStartTimeout         time.Duration
	UsePgRewind                 bool
	SyncMode                    string
	SyncStrict                  bool
	FailsafeMode                bool
	// Watchdog: every member has a working watchdog (timeout ttl minus
	// 5 s). Faults that leave a primary running without a working agent
	// (a frozen or killed agent) are injected only then.
	Watchdog bool

	// Schedule, when set, is the fault schedule to run (a scenario file's);
	// else one is drawn from the seed.
	Schedule []Injection

	// Trace, when set, receives every line of the trace as it happens.
	Trace io.Writer
}

// RandomOptions picks a cluster for a seed.
func RandomOptions(seed uint64, steps int) Options {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	o := Options{Seed: seed, Members: 3 + r.IntN(2), Steps: steps}
	switch r.IntN(3) {
	case 0:
		o.TTL, o.LoopWait, o.RetryTimeout = 30*time.Second, 10*time.Second, 10*time.Second
	case 1:
		o.TTL, o.LoopWait, o.RetryTimeout = 10*time.Second, 2*time.Second, 4*time.Second
	default:
		o.TTL, o.LoopWait, o.RetryTimeout = 20*time.Second, 5*time.Second, 5*time.Second
	}
	o.PrimaryStartTimeout = []time.Duration{0, o.TTL, 300 * time.Second}[r.IntN(3)]
	o.UsePgRewind = r.IntN(3) > 0
	o.SyncMode = []string{ha.SyncOff, ha.SyncOn, ha.SyncQuorum}[r.IntN(3)]
	o.SyncStrict = r.IntN(3) == 0
	o.FailsafeMode = r.IntN(3) == 0
	o.Watchdog = r.IntN(4) > 0
	return o
}

func (o Options) String() string {
	return fmt.Sprintf("seed=%d members=%d ttl=%s loop_wait=%s retry_timeout=%s primary_start_timeout=%s use_pg_rewind=%v synchronous_mode=%s strict=%v failsafe_mode=%v watchdog=%v",
		o.Seed, o.Members, o.TTL, o.LoopWait, o.RetryTimeout, o.PrimaryStartTimeout, o.UsePgRewind, o.SyncMode, o.SyncStrict, o.FailsafeMode, o.Watchdog)
}

func (o Options) bootstrapDynamic() dynamic {
	return dynamic{SyncMode: o.SyncMode, SyncStrict: o.SyncStrict, FailsafeMode: o.FailsafeMode}
}

// event is something that happens at a simulated instant.
type event struct {
	at  time.Time
	seq uint64
	fn  func()
}

type events []*event

func (q events) Len() int { return len(q) }
func (q events) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q events) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *events) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *events) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// node is one machine: a PostgreSQL server, the agent beside it (nil
// while its process is not running) and its watchdog.
type node struct {
	name  string
	pg    *postgres
	agent *agent
	// down: the machine is off (crashed, rebooting).
	down bool
	// The watchdog: armed, it resets the machine at wdFires unless fed.
	wdArmed bool
	wdFires time.Time
}

func (n *node) watchdogState(o Options) ha.Watchdog {
	if !o.Watchdog {
		return ha.Watchdog{}
	}
	return ha.Watchdog{Available: true, Armed: n.wdArmed}
}

// feedWatchdog restarts the countdown of an armed watchdog; after a
// renewal (expiry not zero) it runs out no later than the safety margin
// before the key's expiry, as watchdog.FeedBefore does.
func (n *node) feedWatchdog(w *World, expiry time.Time) {
	if !n.wdArmed {
		return
	}
	const margin = 5 * time.Second
	timeout := w.opt.TTL - margin
	if left := expiry.Sub(w.now) - margin; !expiry.IsZero() && left < timeout-time.Second {
		timeout = max(left, time.Second)
	}
	n.wdFires = w.now.Add(timeout)
	fires := n.wdFires
	w.at(fires, func() {
		if n.wdArmed && n.wdFires.Equal(fires) && !n.down {
			w.tracef("%s: watchdog fired", n.name)
			w.resets++
			w.crashNode(n)
			// The reset reboots the machine.
			w.after(w.duration(5*time.Second, 30*time.Second), func() { w.bootNode(n) })
		}
	})
}

// commit is a write the client sent to a primary.
type commit struct {
	node   string
	branch int
	lsn    int64
	// durable: acknowledged under synchronous replication, so it must
	// survive any failover.
	durable bool
}

// World is a simulated cluster: the members, the DCS, the network, a
// client, simulated time and the faults.
type World struct {
	opt Options
	rng *rand.Rand
	now time.Time
	q   events
	seq uint64

	steps     int
	decisions int
	resets    int
	dcs       *store
	nodes     []*node
	branches  int
	// owner is the member that started each branch (by promotion or
	// bootstrap).
	owner map[int]string
	// knownLimits counts the replicas left unable to stream by a known
	// limit (sameNumberReplica).
	knownLimits int
	counted     map[string]bool

	// The network: dcsDown stops the whole DCS; cutDCS cuts one member
	// from it; cut cuts two members from each other; slow adds latency to
	// a member's requests.
	dcsDown bool
	cutDCS  map[string]bool
	// lostAnswers: the DCS's answers to the member are lost (its
	// requests still arrive).
	lostAnswers map[string]bool
	// minority: the member's writes never commit (its reads are served).
	minority map[string]bool
	cut      map[[2]string]bool
	slow     map[string]time.Duration

	// The client's writes waiting for an acknowledgement, and the
	// acknowledged ones.
	pending []commit
	acked   []commit

	// The fault schedule: plan draws it; injected is what was applied;
	// calm is when the last storm ended, convergence how long each took
	// to settle.
	plan        *rand.Rand
	start       time.Time
	injected    []Injection
	calm        time.Time
	convergence []time.Duration

	trace []string
	err   error
	// over: a scenario's schedule ran out and the cluster had its time.
	over bool
}

// New makes a world of opt.Members members with empty data directories.
func New(opt Options) *World {
	w := &World{
		opt:         opt,
		rng:         rand.New(rand.NewPCG(opt.Seed, 1)),
		plan:        rand.New(rand.NewPCG(opt.Seed, 2)),
		now:         time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		dcs:         newStore(),
		owner:       map[int]string{},
		counted:     map[string]bool{},
		cutDCS:      map[string]bool{},
		lostAnswers: map[string]bool{},
		minority:    map[string]bool{},
		cut:         map[[2]string]bool{},
		slow:        map[string]time.Duration{},
	}
	for i := range opt.Members {
		n := &node{name: fmt.Sprintf("pg%d", i+1)}
		n.pg = &postgres{name: n.name}
		w.nodes = append(w.nodes, n)
		w.after(w.duration(0, 3*time.Second), func() { w.startAgent(n) })
	}
	w.after(time.Second, w.replicate)
	w.after(time.Second, w.write)
	w.calm, w.start = w.now, w.now
	return w
}

// Run runs the simulation for opt.Steps events (a scenario: until its
// schedule ran out and the cluster had its time to settle), or until an
// invariant breaks; it returns the broken invariant with the trace that
// led there.
func (w *World) Run() error { return w.report(w.run()) }

func (w *World) run() error {
	if w.opt.Schedule != nil {
		w.schedule(w.opt.Schedule)
		last := w.opt.Schedule[len(w.opt.Schedule)-1].At
		w.at(w.start.Add(last+w.convergeBound()+10*time.Second), func() { w.over = true })
	} else {
		w.schedule(w.storm(dur(w.plan, 20*time.Second, time.Minute)))
	}
	for w.steps < w.opt.Steps && w.err == nil && !w.over && w.q.Len() > 0 {
		e := heap.Pop(&w.q).(*event)
		w.now = e.at
		e.fn()
		w.steps++
		w.check()
	}
	return w.err
}

func (w *World) report(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w\n%s\nlast trace lines:\n%s", err, w.opt, strings.Join(w.trace, "\n"))
}

// KnownLimits is how many replicas a known limit left unable to stream.
func (w *World) KnownLimits() int { return w.knownLimits }

// Steps is how many events ran; Decisions how many times ha.Decide ran.
func (w *World) Steps() int     { return w.steps }
func (w *World) Decisions() int { return w.decisions }

func (w *World) at(t time.Time, fn func()) {
	w.seq++
	heap.Push(&w.q, &event{at: t, seq: w.seq, fn: fn})
}

func (w *World) after(d time.Duration, fn func()) { w.at(w.now.Add(d), fn) }

// duration is a random duration in [lo, hi).
func (w *World) duration(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)))
}

// latency is one message's travel time to or from a member.
// A slow DCS answers each message of the member in up to its latency:
// one request may pass quickly and the next one not (a renewal that times
// out after a read that did not).
func (w *World) latency(name string) time.Duration {
	d := w.duration(time.Millisecond, 20*time.Millisecond)
	if s := w.slow[name]; s > 0 {
		d += w.duration(0, s)
	}
	return d
}

// peerLatency is one way of a message between two members' agents: a
// slow DCS does not slow them.
func (w *World) peerLatency() time.Duration {
	return w.duration(time.Millisecond, 20*time.Millisecond)
}

const traceLines = 300

func (w *World) tracef(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs ", w.now.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).Seconds()) + fmt.Sprintf(format, args...)
	if w.opt.Trace != nil {
		fmt.Fprintln(w.opt.Trace, line)
	}
	if len(w.trace) == traceLines {
		copy(w.trace, w.trace[1:])
		w.trace = w.trace[:traceLines-1]
	}
	w.trace = append(w.trace, line)
}

func (w *World) fail(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf("step %d, %s: %s", w.steps, w.now.Format("15:04:05.000"), fmt.Sprintf(format, args...))
		w.tracef("FAILED: %v", w.err)
	}
}

func (w *World) node(name string) *node {
	for _, n := range w.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (w *World) dcsReachable(name string) bool {
	n := w.node(name)
	return !w.dcsDown && !w.cutDCS[name] && n != nil && !n.down
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func (w *World) peerReachable(a, b string) bool {
	na, nb := w.node(a), w.node(b)
	return na != nil && nb != nil && !na.down && !nb.down && !w.cut[pair(a, b)]
}

// dcsChanged wakes the watches of the members that can hear the DCS.
func (w *World) dcsChanged() {
	for _, n := range w.nodes {
		if !w.dcsReachable(n.name) {
			continue
		}
		w.after(w.latency(n.name), func() {
			if a := n.agent; a != nil && w.dcsReachable(n.name) {
				a.notify("watch")
			}
		})
	}
}

// scheduleExpiry makes keys expire (and watchers hear of it) on time.
func (w *World) scheduleExpiry(t time.Time) {
	w.at(t, func() {
		if !w.dcsDown && w.dcs.expire(w.now) {
			w.dcsChanged()
		}
	})
}

func (w *World) leaderTaken(name string) { w.tracef("%s: took the leader key", name) }

// observe is what an agent finds of its PostgreSQL.
func (w *World) observe(n *node) ha.Postgres {
	pg := n.pg
	o := ha.Postgres{DataDir: ha.DataDirEmpty}
	if !pg.initialized {
		return o
	}
	o.DataDir = ha.DataDirInitialized
	o.SysID = pg.sysID
	o.ControlState = pg.control
	o.CheckpointLSN = pg.checkpoint
	o.MinRecoveryEnd = pg.minRecovery
	o.ControlTimeline = pg.hist.timeline()
	o.BackupLabel = pg.backupLabel
	o.Running = pg.running
	for _, sp := range pg.hist.switchPoints() {
		o.History = append(o.History, ha.TimelineSwitch{Timeline: sp.timeline, LSN: sp.lsn})
	}
	if !pg.running || !pg.ready(w.now) || pg.stopping {
		return o
	}
	o.Ready = true
	o.InRecovery = pg.inRecovery
	o.Timeline = pg.hist.timeline()
	o.LSN = pg.hist.lsn()
	o.ServerVersion = 150000
	o.SyncStandbyNames = pg.syncNames
	if pg.inRecovery {
		o.Upstream = pg.upstream
		o.Streaming = pg.streaming
		return o
	}
	rule, ok := parseSyncNames(pg.syncNames)
	for _, s := range w.nodes {
		if s == n || !s.pg.running || !s.pg.inRecovery || !s.pg.streaming || s.pg.upstream != n.name {
			continue
		}
		r := ha.Replication{ApplicationName: s.name, State: "streaming", SyncState: "async", FlushLSN: s.pg.hist.lsn()}
		if _, listed := rule.lists(s.name); ok && listed {
			r.SyncState = "sync"
			if rule.method == "ANY" {
				r.SyncState = "quorum"
			}
		}
		o.Replication = append(o.Replication, r)
	}
	return o
}

// peerAnswer is a member's GET /patroni, as the leader race reads it.
func (w *World) peerAnswer(n *node) ha.Peer {
	o := w.observe(n)
	if !o.Running || !o.Ready {
		// GET /patroni without WAL positions counts as unreachable.
		return ha.Peer{Name: n.name, Answered: true}
	}
	return ha.Peer{
		Name: n.name, Reachable: true, Answered: true, Primary: o.Primary(), Running: o.Running && o.Ready,
		LSN: o.LSN, Timeline: o.Timeline,
	}
}

// stopPostgres stops a node's PostgreSQL; a clean stop first sends the
// connected standbys everything.
func (w *World) stopPostgres(n *node, crashed bool) {
	pg := n.pg
	if !pg.running {
		return
	}
	w.dropCommits(n)
	if !crashed && !pg.inRecovery {
		pg.stop(false)
		w.replicateFrom(n)
	} else {
		pg.stop(crashed)
	}
	pg.stopping = false
	pg.streaming = false
	w.tracef("%s: postgres stopped (crashed: %v) at %d on timeline %d", n.name, crashed, pg.hist.lsn(), pg.hist.timeline())
}

// crashPostgres kills the postmaster; the agent hears of the exit.
func (w *World) crashPostgres(n *node) {
	if !n.pg.running {
		return
	}
	w.stopPostgres(n, true)
	if n.agent != nil {
		n.agent.notify("exit")
	}
}

// crashNode turns the machine off: agent and PostgreSQL die; it comes
// back after a while with its data directory and a new agent.
func (w *World) crashNode(n *node) {
	if n.down {
		return
	}
	if n.agent != nil {
		n.agent.kill()
	}
	w.stopPostgres(n, true)
	n.down, n.wdArmed = true, false
	w.tracef("%s: node down", n.name)
}

func (w *World) bootNode(n *node) {
	if !n.down {
		return
	}
	n.down = false
	w.tracef("%s: node up", n.name)
	w.after(w.duration(100*time.Millisecond, 2*time.Second), func() {
		if !n.down && n.agent == nil {
			w.startAgent(n)
		}
	})
}

// replicate is the standbys streaming: every 200 ms each running standby
// receives what its upstream has, if its WAL is a prefix of the
// upstream's.
func (w *World) replicate() {
	for _, n := range w.nodes {
		if n.pg.running && !n.pg.inRecovery {
			w.replicateFrom(n)
		}
	}
	for _, n := range w.nodes {
		pg := n.pg
		if !pg.running || !pg.inRecovery || pg.upstream == "" {
			pg.streaming = false
			continue
		}
		up := w.node(pg.upstream)
		if up == nil || !up.pg.running || up.pg.stopping || !pg.ready(w.now) || !w.peerReachable(n.name, up.name) || !pg.hist.prefixOf(up.pg.hist) {
			pg.streaming = false
			continue
		}
		pg.hist = up.pg.hist.upTo(up.pg.hist.lsn())
		pg.streaming = true
	}
	for _, n := range w.nodes {
		if n.pg.running && !n.pg.inRecovery {
			w.settleCommits(n)
		}
	}
	w.after(200*time.Millisecond, w.replicate)
}

// replicateFrom sends a primary's WAL to its connected standbys.
func (w *World) replicateFrom(p *node) {
	for _, n := range w.nodes {
		pg := n.pg
		if n == p || !pg.running || !pg.inRecovery || pg.upstream != p.name || !pg.ready(w.now) || !w.peerReachable(n.name, p.name) || !pg.hist.prefixOf(p.pg.hist) {
			continue
		}
		pg.hist = p.pg.hist.upTo(p.pg.hist.lsn())
		pg.streaming = true
	}
}

// write is the client: every 100 ms it commits a row on every member
// that accepts writes.
func (w *World) write() {
	for _, n := range w.nodes {
		if !n.pg.writable(w.now) || n.pg.stopping {
			continue
		}
		pos := n.pg.appendRecord()
		w.pending = append(w.pending, commit{node: n.name, branch: n.pg.hist.branchAt(pos), lsn: pos})
		w.settleCommits(n)
	}
	w.after(100*time.Millisecond, w.write)
}

// settleCommits acknowledges the commits on n that its synchronous
// standbys confirmed (all of them when it names none).
func (w *World) settleCommits(n *node) {
	rule, sync := parseSyncNames(n.pg.syncNames)
	kept := w.pending[:0]
	for _, c := range w.pending {
		if c.node != n.name {
			kept = append(kept, c)
			continue
		}
		confirmed := 0
		if sync {
			for _, s := range w.nodes {
				if _, listed := rule.lists(s.name); listed && s != n && s.pg.running && s.pg.streaming && s.pg.upstream == n.name && s.pg.hist.branchAt(c.lsn) == c.branch {
					confirmed++
				}
			}
		}
		if !sync || confirmed >= rule.num {
			c.durable = w.dcs.config != nil && w.dcs.config.SyncMode != ha.SyncOff && sync
			w.acked = append(w.acked, c)
			continue
		}
		kept = append(kept, c)
	}
	w.pending = kept
}

// dropCommits fails the commits waiting on a server that stops.
func (w *World) dropCommits(n *node) {
	kept := w.pending[:0]
	for _, c := range w.pending {
		if c.node != n.name {
			kept = append(kept, c)
		}
	}
	w.pending = kept
}

// check tests the invariants after every step.
func (w *World) check() {
	var writable []string
	for _, n := range w.nodes {
		if n.pg.writable(w.now) && !n.pg.stopping {
			writable = append(writable, n.name)
		}
	}
	if len(writable) > 1 {
		w.fail("%s accept writes at once", strings.Join(writable, " and "))
	}
	for _, name := range writable {
		pg := w.node(name).pg
		for _, c := range w.acked {
			if c.durable && pg.hist.branchAt(c.lsn) != c.branch {
				w.fail("%s accepts writes without the acknowledged commit at %d (branch %d) in synchronous mode", name, c.lsn, c.branch)
				return
			}
		}
	}
}

// sameNumberReplica reports a known limit: a replica that received, as a
// replica, WAL of a branch another member promoted onto a timeline number
// the leader's line then got from yet another promotion at the same point
// (its promoter crashed before publishing /history). Neither timelines
// nor switch points tell; the member never ran as a primary on it, so it
// has no memory of it either. PostgreSQL would pick a higher timeline if
// the promoting member had that branch's history file, which custos does
// not fetch (docs/simulation.md). It is counted, not failed.
func (w *World) sameNumberReplica(n, leader *node) bool {
	for _, s := range n.pg.hist {
		for _, t := range leader.pg.hist {
			if s.timeline == t.timeline && s.branch != t.branch && s.start == t.start && w.owner[s.branch] != n.name {
				if !w.counted[n.name] {
					w.counted[n.name] = true
					w.knownLimits++
					w.tracef("%s: known limit: it holds timeline %d of %s's branch, the leader %s's", n.name, s.timeline, w.owner[s.branch], w.owner[t.branch])
				}
				return true
			}
		}
	}
	return false
}

// converged: one member holds the leader key and accepts writes, every
// other one streams from it (or from a replica of it).
func (w *World) converged() (bool, string) {
	w.dcs.expire(w.now)
	l := w.dcs.leader
	if l == nil {
		return false, "no leader key"
	}
	leader := w.node(l.name)
	if !leader.pg.writable(w.now) {
		return false, "leader " + l.name + " does not accept writes"
	}
	for _, n := range w.nodes {
		if n == leader {
			continue
		}
		if n.agent == nil || n.agent.busy != nil {
			return false, n.name + " is busy or its agent is not running"
		}
		if n.pg.running && n.pg.inRecovery && !n.pg.streaming && w.sameNumberReplica(n, leader) {
			continue
		}
		if !n.pg.running || !n.pg.inRecovery || !n.pg.streaming {
			return false, fmt.Sprintf("%s does not stream (running %v, upstream %q, timeline %d at %d, its WAL a prefix of the leader's: %v; leader on timeline %d at %d)",
				n.name, n.pg.running, n.pg.upstream, n.pg.hist.timeline(), n.pg.hist.lsn(), n.pg.hist.prefixOf(leader.pg.hist), leader.pg.hist.timeline(), leader.pg.hist.lsn()) +
				fmt.Sprintf("; WAL (branch timeline start end): %v, the leader's: %v", n.pg.hist, leader.pg.hist)
		}
		if n.pg.sysID != leader.pg.sysID {
			return false, n.name + " belongs to another cluster"
		}
	}
	return true, ""
}
