package sim

import (
	"fmt"
	"time"

	"github.com/custos-ha/custos/core/ha"
)

// startBackground starts an async action. Its effect on PostgreSQL
// happens when it would for real: a start or a promotion asked of the
// server goes on if the agent dies; a clone, a rewind or a bootstrap (the
// agent's child processes) dies with it.
func (a *agent) startBackground(act ha.Action) string {
	w, n, pg := a.w, a.n, a.n.pg
	if a.busy != nil {
		return "another action runs"
	}
	b := &background{kind: act.Kind, since: w.now, target: act.Member}
	alive := func() bool { return !a.dead && a.busy == b }
	finish := func(err string) {
		if !alive() {
			return
		}
		a.pendingDone = &ha.Outcome{Kind: act.Kind, Err: err, At: w.now}
		if err != "" {
			a.log("%s failed: %s", act.Kind, err)
		}
		if a.sleeping {
			a.wake(a.waitGen, "action_done")
		}
	}
	source := func() *node {
		src := w.node(act.Member)
		if src == nil || src == n || src.down || !src.pg.running || !src.pg.initialized || !w.peerReachable(n.name, src.name) {
			return nil
		}
		return src
	}
	// copyAfter makes the data directory a copy of the source's after d
	// (a base backup, or a pg_rewind, which needs the same system).
	copyAfter := func(d time.Duration, what, done string, sameSystem bool) {
		w.after(d, func() {
			if !alive() || n.down {
				return
			}
			src := source()
			if src == nil || sameSystem && src.pg.sysID != pg.sysID {
				finish(what + " source " + act.Member + " unavailable")
				return
			}
			pg.copyFrom(src.pg)
			w.tracef("%s: %s from %s at %d on timeline %d", n.name, done, src.name, pg.hist.lsn(), pg.hist.timeline())
			finish("")
		})
	}
	switch act.Kind {
	case ha.ActStart:
		if pg.running {
			return "already running"
		}
		if !pg.initialized {
			return "no data directory"
		}
		d := w.duration(300*time.Millisecond, 3*time.Second)
		pg.start(w.now, d, act.AsPrimary && !pg.inRecoveryOnStart(), act.Member)
		w.tracef("%s: starting postgres (primary: %v, upstream %q)", n.name, !pg.inRecovery, act.Member)
		w.after(d, func() {
			if pg.running {
				finish("")
			} else {
				finish("postgres exited during start")
			}
		})
	case ha.ActPromote:
		if !pg.running || !pg.inRecovery {
			return "not a running standby"
		}
		pg.promoting = true
		w.after(w.duration(200*time.Millisecond, 1500*time.Millisecond), func() {
			if !pg.running || !pg.promoting || !pg.inRecovery {
				finish("promotion did not complete")
				return
			}
			w.branches++
			w.owner[w.branches] = n.name
			pg.promote(w.branches)
			w.tracef("%s: promoted to timeline %d at %d", n.name, pg.hist.timeline(), pg.hist.lsn())
			finish("")
		})
	case ha.ActBootstrap:
		if pg.initialized || pg.running {
			return "data directory not empty"
		}
		w.after(w.duration(time.Second, 4*time.Second), func() {
			if !alive() || n.down {
				return
			}
			w.branches++
			w.owner[w.branches] = n.name
			pg.initialized = true
			pg.sysID = fmt.Sprintf("7%018d", w.rng.Int64N(1e18))
			pg.hist = history{{branch: w.branches, timeline: 1, start: 0, end: 1}}
			pg.control, pg.checkpoint = ha.ControlShutDown, 1
			d := w.duration(200*time.Millisecond, time.Second)
			pg.start(w.now, d, true, "")
			w.tracef("%s: initialized the cluster %s", n.name, pg.sysID)
			w.after(d, func() { finish("") })
		})
	case ha.ActCreateReplica, ha.ActReinitialize:
		if act.Kind == ha.ActReinitialize {
			w.stopPostgres(n, true)
			pg.wipe()
		} else if pg.initialized || pg.running {
			return "data directory not empty"
		}
		copyAfter(w.duration(time.Second, 6*time.Second), "clone", "cloned", false)
	case ha.ActRewind:
		if pg.running {
			return "postgres runs"
		}
		copyAfter(w.duration(500*time.Millisecond, 3*time.Second), "pg_rewind", "rewound", true)
	case ha.ActDemote:
		if !pg.running {
			return "not running"
		}
		pg.stopping = true
		w.dropCommits(n)
		w.after(w.duration(300*time.Millisecond, 2*time.Second), func() {
			w.stopPostgres(n, false)
			finish("")
		})
	case ha.ActRestart:
		if !pg.running {
			return "not running"
		}
		primary := !pg.inRecovery
		upstream := pg.upstream
		pg.stopping = true
		w.dropCommits(n)
		w.after(w.duration(300*time.Millisecond, 2*time.Second), func() {
			w.stopPostgres(n, false)
			if !alive() || n.down {
				return
			}
			d := w.duration(300*time.Millisecond, 3*time.Second)
			pg.start(w.now, d, primary, upstream)
			w.after(d, func() { finish("") })
		})
	default:
		return "unknown background action " + string(act.Kind)
	}
	a.busy = b
	return ""
}

// inRecoveryOnStart: the data directory must start as a standby whatever
// is asked (a fresh clone or rewind carries a backup label).
func (p *postgres) inRecoveryOnStart() bool { return p.backupLabel }
