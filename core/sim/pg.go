package sim

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/ha"
)

// segment is a stretch of WAL on one branch: the positions (start, end].
// A branch is one timeline as one server wrote it: two members promoted
// onto the same timeline number write two branches, which is how the
// simulation tells data that diverged from data that did not.
type segment struct {
	branch   int
	timeline int
	start    int64
	end      int64
}

// history is a server's WAL as a list of segments, oldest first; its last
// segment ends at the server's position.
type history []segment

func (h history) lsn() int64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].end
}

func (h history) timeline() int {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].timeline
}

// branchAt is the branch of the record ending at pos, 0 when the history
// does not reach it.
func (h history) branchAt(pos int64) int {
	for _, s := range h {
		if pos > s.start && pos <= s.end {
			return s.branch
		}
	}
	return 0
}

// prefixOf reports whether h is o up to h's position: the same records.
func (h history) prefixOf(o history) bool {
	if h.lsn() > o.lsn() {
		return false
	}
	for _, s := range h {
		for _, t := range o {
			if t.end <= s.start || t.start >= s.end {
				continue
			}
			if t.branch != s.branch {
				return false
			}
		}
	}
	return true
}

// upTo is a copy of h cut at pos.
func (h history) upTo(pos int64) history {
	var out history
	for _, s := range h {
		if s.start >= pos && !(s.start == pos && s.end == pos) {
			break
		}
		s.end = min(s.end, pos)
		out = append(out, s)
	}
	return out
}

// switchPoints are the timeline history file's lines: where each earlier
// timeline was left.
func (h history) switchPoints() []switchPoint {
	var out []switchPoint
	for i := 1; i < len(h); i++ {
		if h[i].timeline != h[i-1].timeline {
			out = append(out, switchPoint{timeline: h[i-1].timeline, lsn: h[i].start})
		}
	}
	return out
}

type switchPoint struct {
	timeline int
	lsn      int64
}

// postgres is one simulated PostgreSQL server and its data directory.
type postgres struct {
	name string
	// Data directory.
	initialized bool
	sysID       string
	hist        history
	control     string
	checkpoint  int64
	minRecovery int64
	backupLabel bool

	running bool
	// readyAt: a started server accepts connections from then on.
	readyAt time.Time
	// stopping: a stop began; it takes no more writes.
	stopping   bool
	inRecovery bool
	upstream   string
	streaming  bool
	// promoting: a promotion was asked for (it ends at the promote's
	// completion unless the server stops first).
	promoting bool
	syncNames string
}

func (p *postgres) ready(now time.Time) bool { return p.running && !now.Before(p.readyAt) }

// writable: it accepts writes now.
func (p *postgres) writable(now time.Time) bool {
	return p.ready(now) && !p.inRecovery && !p.stopping
}

// start starts the server as a primary or a standby of upstream.
func (p *postgres) start(now time.Time, takes time.Duration, asPrimary bool, upstream string) {
	p.running, p.stopping, p.streaming = true, false, false
	p.readyAt = now.Add(takes)
	p.inRecovery = !asPrimary
	p.upstream = upstream
	p.promoting = false
	p.backupLabel = false
	if asPrimary {
		p.control = ha.ControlInProduction
	} else {
		p.control = ha.ControlInArchiveRecovery
	}
}

// stop stops the server. A clean stop of a primary writes a shutdown
// checkpoint record; crashed is a SIGKILL or an immediate stop.
func (p *postgres) stop(crashed bool) {
	if !p.running {
		return
	}
	p.running, p.promoting = false, false
	switch {
	case crashed && p.inRecovery:
		p.control = ha.ControlInArchiveRecovery
	case crashed:
		p.control = ha.ControlInProduction
	case p.inRecovery:
		p.control = ha.ControlShutDownInRecovery
		p.checkpoint = p.hist.lsn()
	default:
		p.checkpoint = p.hist.lsn()
		p.appendRecord()
		p.control = ha.ControlShutDown
	}
}

// appendRecord writes one WAL record on the current branch and returns its
// position.
func (p *postgres) appendRecord() int64 {
	last := &p.hist[len(p.hist)-1]
	last.end++
	return last.end
}

// promote ends recovery on a new branch of the next timeline.
func (p *postgres) promote(branch int) {
	p.inRecovery, p.promoting, p.upstream, p.streaming = false, false, "", false
	pos := p.hist.lsn()
	p.hist = append(p.hist, segment{branch: branch, timeline: p.maxTimeline() + 1, start: pos, end: pos})
	p.control = ha.ControlInProduction
	p.checkpoint = p.appendRecord()
}

func (p *postgres) maxTimeline() int {
	tl := 0
	for _, s := range p.hist {
		tl = max(tl, s.timeline)
	}
	return tl
}

// copyFrom makes the data directory a copy of src's (a base backup or a
// pg_rewind): it starts as a standby replaying from there.
func (p *postgres) copyFrom(src *postgres) {
	p.initialized = true
	p.sysID = src.sysID
	p.hist = append(history(nil), src.hist...)
	p.control = ha.ControlInArchiveRecovery
	p.checkpoint = src.hist.lsn()
	p.minRecovery = src.hist.lsn()
	p.backupLabel = true
}

// wipe removes the data directory.
func (p *postgres) wipe() {
	*p = postgres{name: p.name}
}

// syncRule is synchronous_standby_names read: Method is FIRST or ANY, Num
// the number of standbys to wait for, Names the standbys ("*" any).
type syncRule struct {
	method string
	num    int
	names  []string
}

var (
	numRE = regexp.MustCompile(`^\s*(?i:(FIRST|ANY)\s+)?(\d+)\s*\((.*)\)\s*$`)
)

func parseSyncNames(v string) (syncRule, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return syncRule{}, false
	}
	r := syncRule{method: "FIRST", num: 1}
	list := v
	if m := numRE.FindStringSubmatch(v); m != nil {
		if strings.EqualFold(m[1], "ANY") {
			r.method = "ANY"
		}
		r.num, _ = strconv.Atoi(m[2])
		list = m[3]
	}
	for _, n := range strings.Split(list, ",") {
		r.names = append(r.names, strings.Trim(strings.TrimSpace(n), `"`))
	}
	return r, true
}

// lists: the rule names the standby.
func (r syncRule) lists(name string) (int, bool) {
	for i, n := range r.names {
		if n == "*" || strings.EqualFold(n, name) {
			return i, true
		}
	}
	return 0, false
}
