package ha

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/custos-ha/custos/core/cluster"
)

// strictPlaceholder is what synchronous_standby_names names in strict mode
// when no standby is eligible: writes wait (Patroni up to 4.1.4).
const strictPlaceholder = "*"

// syncActive reports whether synchronous mode (priority, not quorum)
// governs who may be promoted: mode on and /sync names a leader, or
// synchronous mode (either) with /sync malformed.
func (d *decider) syncActive() bool {
	return d.in.Config.SyncMode == SyncOn && d.c.Sync != nil && d.c.Sync.Leader != "" || d.syncUnknown()
}

// syncEligible reports whether the member may be promoted in synchronous
// mode: it is listed in /sync, or it is the /sync leader itself; nobody is
// while /sync is malformed.
func (d *decider) syncEligible(name string) bool {
	if d.syncUnknown() {
		return false
	}
	s := d.c.Sync
	return s.Matches(name) || strings.EqualFold(s.Leader, name)
}

// prePromoteSync is the /sync write that must succeed before a promotion
// in synchronous mode: me as the leader, with the old synchronous standbys
// in strict mode, none otherwise. The compare-and-set keeps two members
// from both believing they may promote.
func (d *decider) prePromoteSync() []Action {
	if d.in.Config.SyncMode == SyncQuorum {
		return d.prePromoteQuorum()
	}
	if d.in.Config.SyncMode != SyncOn {
		return nil
	}
	var keep []string
	if s := d.c.Sync; s != nil && d.in.Config.SyncStrict {
		for _, n := range s.SyncStandby {
			if !strings.EqualFold(n, d.in.Name) {
				keep = append(keep, n)
			}
		}
	}
	return []Action{{Kind: ActWriteSync, Members: keep}}
}

// syncReplication is the primary's synchronous replication duty of one
// cycle (synchronous_mode on, strict or quorum; off deletes /sync): it
// adds the actions and, when they change something, the cycle's note.
func (d *decider) syncReplication() {
	cfg := d.in.Config
	s := d.c.Sync
	if d.syncUnknown() {
		d.rewriteMalformedSync()
		return
	}
	if cfg.SyncMode == SyncQuorum {
		d.quorumReplication()
		return
	}
	if cfg.SyncMode != SyncOn {
		if s != nil && strings.EqualFold(s.Leader, d.in.Name) {
			d.add(Action{Kind: ActDeleteSync})
		}
		if d.mem.ManagesSyncNames {
			d.add(Action{Kind: ActSetSyncStandbyNames})
			d.mem.ManagesSyncNames = false
		}
		return
	}
	if s == nil || !strings.EqualFold(s.Leader, d.in.Name) {
		d.add(Action{Kind: ActWriteSync})
		d.note = "taking over /sync"
		return
	}
	want := d.syncCandidates()
	current := s.SyncStandby
	keep := intersect(current, want)
	names := want
	if cfg.SyncStrict && len(want) == 0 {
		// Strict: no eligible standby keeps writes waiting for the old ones.
		keep, names = current, current
	}
	value := syncStandbyNames(names, cfg.SyncStrict)
	shrink := !sameNames(keep, current)
	if shrink {
		// Shrink first: /sync never lists a standby PostgreSQL may no
		// longer wait for.
		d.add(Action{Kind: ActWriteSync, Members: keep})
		d.note = "synchronous standbys: " + joinOrNone(keep)
	}
	if d.pg.SyncStandbyNames != value || !d.mem.ManagesSyncNames {
		d.add(Action{Kind: ActSetSyncStandbyNames, Value: &value})
		d.mem.ManagesSyncNames = true
	}
	if shrink || d.pg.SyncStandbyNames != value {
		// Grow only once PostgreSQL runs with the new names.
		return
	}
	grow := append([]string(nil), keep...)
	for _, r := range d.pg.Replication {
		if (r.SyncState == "sync" || r.SyncState == "quorum") && containsFold(want, r.ApplicationName) && !containsFold(grow, r.ApplicationName) {
			grow = append(grow, memberName(want, r.ApplicationName))
		}
	}
	if !sameNames(grow, current) {
		d.add(Action{Kind: ActWriteSync, Members: grow})
		d.note = "synchronous standbys: " + joinOrNone(grow)
	}
}

// syncCandidates picks the standbys to make synchronous, best first, up to
// synchronous_node_count: running members streaming to me, not nosync,
// sync_priority above 0, within maximum_lag_on_syncnode; ordered by
// sync_priority, then already synchronous, then position, nofailover last.
func (d *decider) syncCandidates() []string {
	all := d.syncStandbys()
	n := max(d.in.Config.SyncNodeCount, 1)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// syncStandbys lists every standby that may be synchronous, best first
// (the order of syncCandidates).
func (d *decider) syncStandbys() []string {
	type cand struct {
		name       string
		prio       int
		sync       bool
		lsn        int64
		nofailover bool
	}
	rows := map[string]Replication{}
	for _, r := range d.pg.Replication {
		rows[strings.ToLower(r.ApplicationName)] = r
	}
	var cands []cand
	for _, m := range d.c.Members {
		if strings.EqualFold(m.Name, d.in.Name) || m.Tags.NoSync || !m.IsRunning() {
			continue
		}
		prio := 1
		if m.Tags.SyncPriority != nil {
			prio = *m.Tags.SyncPriority
		}
		if prio <= 0 {
			continue
		}
		r, ok := rows[strings.ToLower(m.Name)]
		if !ok || r.State != "streaming" {
			continue
		}
		if lag := d.in.Config.MaximumLagOnSyncNode; lag > 0 && d.pg.LSN-r.FlushLSN > lag {
			continue
		}
		cands = append(cands, cand{name: m.Name, prio: prio, sync: r.SyncState == "sync" || r.SyncState == "quorum",
			lsn: r.FlushLSN, nofailover: !m.Tags.CanFailover()})
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		switch {
		case a.nofailover != b.nofailover:
			return !a.nofailover
		case a.prio != b.prio:
			return a.prio > b.prio
		case a.sync != b.sync:
			return a.sync
		case a.lsn != b.lsn:
			return a.lsn > b.lsn
		}
		return a.name < b.name
	})
	out := make([]string, 0, len(cands))
	for _, c := range cands {
		out = append(out, c.name)
	}
	return out
}

// syncStandbyNames renders synchronous_standby_names as Patroni does: one
// name alone, several as "N (a,b)", sorted and quoted where needed; none
// is "" (or the strict placeholder).
func syncStandbyNames(names []string, strict bool) string {
	if len(names) == 0 {
		if strict {
			return strictPlaceholder
		}
		return ""
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	quoted := make([]string, len(sorted))
	for i, n := range sorted {
		quoted[i] = quoteIdent(n)
	}
	if len(quoted) == 1 {
		return quoted[0]
	}
	return strconv.Itoa(len(quoted)) + " (" + strings.Join(quoted, ",") + ")"
}

// quoteIdent double-quotes a name unless it is a plain lower-case
// identifier.
func quoteIdent(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if containsFold(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

// memberName returns the spelling of s used in list.
func memberName(list []string, s string) string {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return x
		}
	}
	return s
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsFold(b, x) {
			return false
		}
	}
	return true
}

func joinOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	s := append([]string(nil), names...)
	sort.Strings(s)
	return strings.Join(s, ",")
}

// SyncValue is the /sync value an ActWriteSync writes for the leader.
func (a Action) SyncValue(leader string) cluster.SyncState {
	return cluster.SyncState{Leader: leader, SyncStandby: a.Members, Quorum: a.Quorum}
}
