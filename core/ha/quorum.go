package ha

import (
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Quorum commit (synchronous_mode = "quorum", PostgreSQL 10 and later).
//
// PostgreSQL acknowledges a commit once numsync members of the set S named
// in synchronous_standby_names = ANY numsync (S) flushed it. /sync names the
// voters V and quorum q: a member may take over only if it is a voter (or
// the /sync leader) and q other voters answer the leader race with none
// ahead of it; with no voter, only the /sync leader may. No acknowledged
// commit is lost while every numsync-subset of S meets every (q+1)-subset
// of V. custos keeps V ⊇ S (or V empty), so that holds while
//
//	|V| <= q + numsync
//
// and moves toward S = V = active, numsync = min(synchronous_node_count,
// |active|), q = |active| - numsync one safe step per cycle: a voter is
// added to /sync (with q raised by one) before PostgreSQL waits for it; it
// leaves synchronous_standby_names (with q raised first when numsync
// drops) before it leaves /sync; q is lowered only once every synchronous
// standby has caught up past the position where it was added.

var anyRE = regexp.MustCompile(`^\s*(?i:ANY)\s+(\d+)\s*\((.*)\)\s*$`)

// parseAny reads "ANY n (a,b)" as written by anyStandbyNames; anything
// else is (0, nil).
func parseAny(ssn string) (int, []string) {
	m := anyRE.FindStringSubmatch(ssn)
	if m == nil {
		return 0, nil
	}
	n, _ := strconv.Atoi(m[1])
	var names []string
	for _, part := range strings.Split(m[2], ",") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, `"`) && strings.HasSuffix(part, `"`) && len(part) >= 2 {
			part = strings.ReplaceAll(part[1:len(part)-1], `""`, `"`)
		}
		if part != "" {
			names = append(names, part)
		}
	}
	return n, names
}

// anyStandbyNames renders ANY n (names), sorted and quoted; "" for none.
func anyStandbyNames(n int, names []string) string {
	if len(names) == 0 {
		return ""
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	quoted := make([]string, len(sorted))
	for i, s := range sorted {
		quoted[i] = quoteIdent(s)
	}
	return "ANY " + strconv.Itoa(n) + " (" + strings.Join(quoted, ",") + ")"
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !containsFold(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, x := range b {
		if !containsFold(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// quorumReplication is the primary's quorum-commit duty of one cycle: at
// most one /sync write or one synchronous_standby_names change.
func (d *decider) quorumReplication() {
	cfg := d.in.Config
	s := d.c.Sync
	if s == nil || !strings.EqualFold(s.Leader, d.in.Name) {
		d.add(Action{Kind: ActWriteSync})
		d.note = "taking over /sync"
		return
	}
	voters, q := s.SyncStandby, s.Quorum
	n, syncSet := parseAny(d.pg.SyncStandbyNames)
	if !d.mem.ManagesSyncNames {
		n, syncSet = 0, nil
	}
	active := d.syncStandbys()
	wanted := max(cfg.SyncNodeCount, 1)
	d.trackAdded(syncSet)

	writeSync := func(v []string, quorum int, why string) {
		d.add(Action{Kind: ActWriteSync, Members: v, Quorum: quorum})
		d.note = fmt.Sprintf("quorum %d of voters %s: %s", quorum, joinOrNone(v), why)
	}
	setNames := func(num int, names []string, why string) {
		value := anyStandbyNames(num, names)
		if len(names) == 0 && cfg.SyncStrict {
			value = strictPlaceholder
		}
		d.add(Action{Kind: ActSetSyncStandbyNames, Value: &value})
		d.mem.ManagesSyncNames = true
		d.note = fmt.Sprintf("synchronous_standby_names = %s: %s", value, why)
	}

	lost := len(syncSet) > 0 && len(intersect(syncSet, active)) == 0
	switch {
	case lost && !cfg.SyncStrict:
		// Nobody synchronous remains: /sync first names no voter (only
		// its leader may then be promoted), then PostgreSQL stops
		// waiting and acknowledges commits on its own.
		if len(voters) > 0 {
			writeSync(nil, 0, "no synchronous standby remains: only the leader may be promoted")
		} else {
			setNames(0, nil, "no synchronous standby remains")
		}
	case len(minus(syncSet, voters)) > 0:
		add := minus(syncSet, voters)
		writeSync(union(voters, add), q+len(add), "synchronous standbys become voters")
	case len(minus(syncSet, active)) > 0 && !lost:
		// (Strict, the last synchronous standbys stay in
		// synchronous_standby_names until new ones joined: commits wait.)
		keep := intersect(syncSet, active)
		num := min(n, len(keep))
		switch need := max(q, len(voters)-num); {
		case need > q:
			writeSync(voters, need, "raising the quorum before a standby leaves")
		default:
			setNames(num, keep, "a standby left")
		}
	case len(minus(voters, union(syncSet, active))) > 0:
		keep := minus(voters, minus(voters, union(syncSet, active)))
		qq := 0
		if len(keep) > 0 && n > 0 {
			qq = min(max(q, len(keep)-n), len(keep)-1)
		}
		writeSync(keep, qq, "a voter left")
	case len(minus(active, voters)) > 0:
		add := minus(active, voters)
		writeSync(union(voters, add), q+len(add), "new voters")
	case len(minus(voters, syncSet)) > 0:
		names := union(syncSet, minus(voters, syncSet))
		num := max(n, min(wanted, len(names)))
		if len(voters) > q+num {
			writeSync(voters, len(voters)-num, "raising the quorum before voters become synchronous")
			return
		}
		d.markAdded(minus(voters, syncSet))
		setNames(num, names, "voters become synchronous")
	default:
		target := min(wanted, len(syncSet))
		switch {
		case n < target:
			// Commits acknowledged under the smaller numsync must reach
			// every standby before the quorum may drop.
			d.markAdded(syncSet)
			setNames(target, syncSet, "raising numsync")
		case n > target && max(q, len(voters)-target) > q:
			writeSync(voters, len(voters)-target, "raising the quorum before lowering numsync")
		case n > target:
			setNames(target, syncSet, "lowering numsync")
		case q > len(voters)-n && d.allCaughtUp(syncSet):
			writeSync(voters, len(voters)-n, "every synchronous standby caught up")
		}
	}
}

// trackAdded gives members of S with no recorded position the current one
// (after an agent restart nothing is recorded: be conservative).
func (d *decider) trackAdded(names []string) {
	for _, name := range names {
		if _, ok := d.mem.QuorumAddedAt[strings.ToLower(name)]; !ok {
			d.markAdded([]string{name})
		}
	}
}

// markAdded records the primary's position when standbys join S.
func (d *decider) markAdded(names []string) {
	m := maps.Clone(d.mem.QuorumAddedAt)
	if m == nil {
		m = map[string]int64{}
	}
	for _, name := range names {
		m[strings.ToLower(name)] = d.pg.LSN
	}
	d.mem.QuorumAddedAt = m
}

// allCaughtUp reports whether every standby of S flushed past the position
// where it joined S.
func (d *decider) allCaughtUp(names []string) bool {
	for _, name := range names {
		added, ok := d.mem.QuorumAddedAt[strings.ToLower(name)]
		if !ok {
			return false
		}
		found := false
		for _, r := range d.pg.Replication {
			if strings.EqualFold(r.ApplicationName, name) && r.FlushLSN >= added {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// prePromoteQuorum is the /sync write before a promotion in quorum mode:
// me as the leader, the other voters kept with the old quorum, and
// synchronous_standby_names naming them, so the new primary's commits are
// synchronous from the first one. The quorum is not lowered with the voter
// that leaves (me): every q+1 of the remaining voters are q+1 of the old
// ones, so they still hold every commit acknowledged under the old
// leader; lowered, a voter that lacks some could take over alone should
// this member fail before the others caught up with it. It drops once
// they did (quorumReplication).
func (d *decider) prePromoteQuorum() []Action {
	var voters []string
	q := 0
	if s := d.c.Sync; s != nil {
		voters = minus(s.SyncStandby, []string{d.in.Name})
		q = s.Quorum
	}
	num := min(max(d.in.Config.SyncNodeCount, 1), len(voters))
	value := anyStandbyNames(num, voters)
	d.mem.ManagesSyncNames = true
	d.mem.QuorumAddedAt = nil
	d.markAdded(voters)
	return []Action{
		{Kind: ActWriteSync, Members: voters, Quorum: q},
		{Kind: ActSetSyncStandbyNames, Value: &value},
	}
}

// quorumRace is the leader race's extra rule in quorum mode: only a voter
// (or the /sync leader) may win, and only when q others of the /sync
// leader and its voters answered without being ahead of it. It returns ok=true when the rule lets the
// ordinary comparison go on.
func (d *decider) quorumRace(peers []Peer) (bool, string) {
	s := d.c.Sync
	if d.in.Config.SyncMode != SyncQuorum || s == nil || s.Leader == "" {
		return true, ""
	}
	wasLeader := strings.EqualFold(s.Leader, d.in.Name)
	if len(s.SyncStandby) == 0 {
		// No voters: the leader acknowledged commits on its own (no
		// standby was there to wait for); only it has them all.
		if !wasLeader {
			return false, "/sync names no quorum voter: only its leader " + s.Leader + " has every acknowledged commit"
		}
		return true, ""
	}
	if !s.Matches(d.in.Name) && !wasLeader {
		return false, "I am not a quorum voter"
	}
	votes, ahead := 0, false
	for _, p := range peers {
		if !p.Reachable || strings.EqualFold(p.Name, d.in.Name) {
			continue
		}
		former := strings.EqualFold(p.Name, s.Leader)
		if !former && !s.Matches(p.Name) {
			continue
		}
		if p.LSN > d.pg.LSN {
			// The former leader ahead does not keep a voter out: what
			// only it has was not acknowledged (it waited for the
			// voters), and it is rewound or cloned.
			ahead = ahead || !former
			continue
		}
		// The /sync leader votes as a voter does: every acknowledged
		// commit is on quorum+1 of the leader and its voters.
		votes++
	}
	switch {
	case ahead:
		return false, "a quorum voter is ahead of me"
	case votes < s.Quorum && !wasLeader:
		return false, fmt.Sprintf("only %d of the %d voters needed answered", votes, s.Quorum)
	}
	return true, ""
}

// quorumVoter: in quorum mode, only a voter in /sync (or its leader, the
// only one when it names none) may be promoted; true outside quorum mode.
func (d *decider) quorumVoter() bool { return d.isQuorumVoter(d.in.Name) }

// isQuorumVoter: the member may be promoted in quorum mode (as
// quorumVoter, for any member).
func (d *decider) isQuorumVoter(name string) bool {
	s := d.c.Sync
	if d.in.Config.SyncMode != SyncQuorum || s == nil || s.Leader == "" {
		return true
	}
	return s.Matches(name) || strings.EqualFold(s.Leader, name)
}
