package ha

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/custos-ha/custos/core/cluster"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Scenario files: testdata/*.txt. Commands:
//
//	world      the input block describes the whole world (replaces it):
//	             name: pg2
//	             now: 100                      seconds since the epoch of the test
//	             config: ttl=30 loop_wait=10 retry_timeout=10 max_lag=1048576
//	                     primary_start_timeout=300 use_pg_rewind remove_on_rewind_failure
//	                     remove_on_diverged check_timeline paused use_slots nofailover priority=N
//	                     clone_without_leader
//	             dcs: down since=90 error=...   (no cluster line: DCS reachable)
//	             cluster: initialize=SYSID|empty leader=NAME optime=N history=TL:LSN[:NEWLEADER],... config
//	             member: NAME role=R state=S xlog=N timeline=N nofailover clonefrom replicatefrom=X nostream
//	             raw: KEY VALUE   a DCS value as stored (KEY: initialize, leader, failover,
//	                              sync, history, status, failsafe, members/NAME), read
//	                              through cluster.FromDCS over what the lines above say;
//	                              VALUE is the rest of the line, or a Go-quoted string
//	             pg: datadir=empty|initialized|broken sysid=X running ready recovery timeline=N lsn=N history=TL:LSN,...
//	                 upstream=X streaming control="shut down" checkpoint=N minrecovery=N controltl=N
//	             busy: KIND since=N
//	             lease: expiry=N renew_failed="why" key_lost   (this member's leader key by its own count)
//	             watchdog: required available armed problem="why"  (no line: mode off)
//	             memory: bootstrapping crashed_at=N rewind_failed demoted bootstrap_failed
//	                     crashed start_failed failsafe_kept=N
//	                     data_timeline=N:MEMBER former_timeline=N:MEMBER
//	             shutting_down
//	set        like world, but only changes the lines given
//	decide     runs Decide; the input block may give this cycle's extras:
//	             peer: NAME reachable|answered primary lsn=N timeline=N priority=N nofailover
//	             outcome: KIND [err=...] [hook=...]
//	             postmaster_exited
//	           The returned Memory is kept for the next decide, as the
//	           controller does.
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		w := &world{}
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			switch td.Cmd {
			case "world":
				w.reset()
				w.apply(t, td.Input)
				return ""
			case "set":
				w.apply(t, td.Input)
				return ""
			case "decide":
				in := w.input(t, td.Input)
				dec := Decide(in)
				if err := CheckInvariants(in, dec); err != nil {
					t.Fatalf("%s: invariant broken: %v", td.Pos, err)
				}
				w.mem = dec.Memory
				return render(dec)
			}
			t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			return ""
		})
	})
}

type world struct {
	lines map[string][]string // kind -> lines, in order (member lines accumulate)
	mem   Memory
}

func (w *world) reset() {
	w.lines = map[string][]string{}
	w.mem = Memory{}
}

func (w *world) apply(t *testing.T, input string) {
	members, repls, raws := false, false, false
	for _, line := range strings.Split(input, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, rest, _ := strings.Cut(line, ":")
		kind = strings.TrimSpace(kind)
		switch kind {
		case "repl":
			if !repls {
				w.lines["repl"] = nil
				repls = true
			}
			w.lines["repl"] = append(w.lines["repl"], strings.TrimSpace(rest))
		case "raw":
			if !raws {
				w.lines["raw"] = nil
				raws = true
			}
			w.lines["raw"] = append(w.lines["raw"], strings.TrimSpace(rest))
		case "member":
			if !members {
				// A set with member lines replaces the member list.
				w.lines["member"] = nil
				members = true
			}
			w.lines["member"] = append(w.lines["member"], strings.TrimSpace(rest))
		case "memory":
			w.mem = parseMemory(t, strings.TrimSpace(rest))
		case "name":
			if old := w.one("name"); old != "" && old != strings.TrimSpace(rest) {
				// Another member decides: its own memory, not the last
				// one's (a memory line after this one sets it).
				w.mem = Memory{}
			}
			w.lines[kind] = []string{strings.TrimSpace(rest)}
		default:
			w.lines[kind] = []string{strings.TrimSpace(rest)}
		}
	}
}

func epoch(secs float64) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(secs * float64(time.Second)))
}

// fields splits `a=b c="d e" f` into a map; bare words map to "".
func fields(t *testing.T, s string) (first string, kv map[string]string) {
	kv = map[string]string{}
	var toks []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		end := strings.IndexByte(s, ' ')
		if q := strings.Index(s, `="`); q >= 0 && (end < 0 || q < end) {
			close := strings.IndexByte(s[q+2:], '"')
			if close < 0 {
				t.Fatalf("unterminated quote in %q", s)
			}
			end = q + 2 + close + 1
		}
		if end < 0 {
			end = len(s)
		}
		toks = append(toks, s[:end])
		s = s[end:]
	}
	for i, tok := range toks {
		k, v, ok := strings.Cut(tok, "=")
		if !ok && i == 0 {
			first = tok
			continue
		}
		kv[k] = strings.Trim(v, `"`)
	}
	return first, kv
}

// flags splits `a=b c` into a map where bare words map to "".
func flags(t *testing.T, s string) map[string]string {
	first, kv := fields(t, s)
	if first != "" {
		kv[first] = ""
	}
	return kv
}

func num(t *testing.T, kv map[string]string, k string) int64 {
	v, ok := kv[k]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q is not a number", k, v)
	}
	return n
}

func has(kv map[string]string, k string) bool { _, ok := kv[k]; return ok }

func (w *world) one(kind string) string {
	if l := w.lines[kind]; len(l) > 0 {
		return l[0]
	}
	return ""
}

func (w *world) input(t *testing.T, extra string) Input {
	in := Input{Name: w.one("name"), Memory: w.mem}
	nowSecs, _ := strconv.ParseFloat(w.one("now"), 64)
	in.Now = epoch(nowSecs)

	cfg := flags(t, w.one("config"))
	in.Config = Config{
		TTL:                                    30 * time.Second,
		LoopWait:                               10 * time.Second,
		RetryTimeout:                           10 * time.Second,
		MaximumLagOnFailover:                   1048576,
		PrimaryStartTimeout:                    300 * time.Second,
		UsePgRewind:                            has(cfg, "use_pg_rewind"),
		RemoveDataDirectoryOnRewindFailure:     has(cfg, "remove_on_rewind_failure"),
		RemoveDataDirectoryOnDivergedTimelines: has(cfg, "remove_on_diverged"),
		CheckTimeline:                          has(cfg, "check_timeline"),
		Paused:                                 has(cfg, "paused"),
		UseSlots:                               has(cfg, "use_slots"),
	}
	for k, dst := range map[string]*time.Duration{"ttl": &in.Config.TTL, "loop_wait": &in.Config.LoopWait, "retry_timeout": &in.Config.RetryTimeout, "primary_start_timeout": &in.Config.PrimaryStartTimeout} {
		if has(cfg, k) {
			*dst = time.Duration(num(t, cfg, k)) * time.Second
		}
	}
	if has(cfg, "max_lag") {
		in.Config.MaximumLagOnFailover = num(t, cfg, "max_lag")
	}
	in.Config.Tags.NoFailover = has(cfg, "nofailover")
	in.Config.Tags.ReplicateFrom = cfg["replicatefrom"]
	in.Config.Tags.NoStream = has(cfg, "nostream")
	in.Config.FailsafeMode = has(cfg, "failsafe")
	in.Config.CloneWithoutLeader = has(cfg, "clone_without_leader")
	in.Config.StandbyCluster = has(cfg, "standby_cluster")
	in.Config.KeepMemberSlots = has(cfg, "keep_member_slots")
	for _, spec := range strings.Split(cfg["permanent"], ",") {
		if spec == "" {
			continue
		}
		name, typ, _ := strings.Cut(spec, ":")
		in.Config.PermanentSlots = append(in.Config.PermanentSlots, cluster.SlotSpec{Name: name, Type: typ, Database: "postgres", Plugin: "pgoutput"})
	}
	for _, n := range strings.Split(w.one("last_failsafe"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			if in.LastFailsafe == nil {
				in.LastFailsafe = cluster.Failsafe{}
			}
			in.LastFailsafe[n] = "http://" + n + ":8008/patroni"
		}
	}
	if hb := w.one("heartbeat"); hb != "" {
		secs, _ := strconv.ParseFloat(hb, 64)
		in.FailsafeHeartbeat = epoch(secs)
	}
	in.Config.SyncMode = SyncOff
	if v, ok := cfg["sync"]; ok {
		in.Config.SyncMode = v
	}
	in.Config.SyncStrict = has(cfg, "strict")
	in.Config.SyncNodeCount = 1
	if has(cfg, "sync_count") {
		in.Config.SyncNodeCount = int(num(t, cfg, "sync_count"))
	}
	in.Config.MaximumLagOnSyncNode = num(t, cfg, "max_lag_sync")
	if has(cfg, "priority") {
		p := int(num(t, cfg, "priority"))
		in.Config.Tags.FailoverPriority = &p
	}

	if dcsLine := w.one("dcs"); dcsLine != "" {
		_, kv := fields(t, dcsLine)
		in.DCSError = kv["error"]
		if in.DCSError == "" {
			in.DCSError = "connection refused"
		}
		in.DCSLastSeen = epoch(float64(num(t, kv, "since")))
	} else {
		in.DCSLastSeen = in.Now
		in.Cluster = w.cluster(t)
	}

	pg := flags(t, w.one("pg"))
	in.Postgres = Postgres{
		SysID:            pg["sysid"],
		Running:          has(pg, "running"),
		Ready:            has(pg, "ready"),
		InRecovery:       has(pg, "recovery"),
		Timeline:         int(num(t, pg, "timeline")),
		LSN:              num(t, pg, "lsn"),
		Upstream:         pg["upstream"],
		Streaming:        has(pg, "streaming"),
		ControlState:     pg["control"],
		CheckpointLSN:    num(t, pg, "checkpoint"),
		MinRecoveryEnd:   num(t, pg, "minrecovery"),
		ControlTimeline:  int(num(t, pg, "controltl")),
		Problem:          pg["problem"],
		ServerVersion:    int(num(t, pg, "version")),
		PendingRestart:   has(pg, "pending_restart"),
		BackupLabel:      has(pg, "backup_label"),
		SyncStandbyNames: pg["ssn"],
	}
	for _, part := range strings.Split(pg["history"], ",") {
		if tl, lsn, ok := strings.Cut(part, ":"); ok {
			tln, _ := strconv.Atoi(tl)
			lsnn, _ := strconv.ParseInt(lsn, 10, 64)
			in.Postgres.History = append(in.Postgres.History, TimelineSwitch{Timeline: tln, LSN: lsnn})
		}
	}
	for _, line := range w.lines["repl"] {
		name, kv := fields(t, line)
		in.Postgres.Replication = append(in.Postgres.Replication, Replication{ApplicationName: name,
			State: kv["state"], SyncState: kv["sync_state"], FlushLSN: num(t, kv, "flush")})
	}
	switch pg["datadir"] {
	case "empty":
		in.Postgres.DataDir = DataDirEmpty
	case "initialized":
		in.Postgres.DataDir = DataDirInitialized
	case "broken":
		in.Postgres.DataDir = DataDirBroken
	}
	if b := w.one("busy"); b != "" {
		kind, kv := fields(t, b)
		in.Busy = &Busy{Kind: Kind(kind), Since: epoch(float64(num(t, kv, "since")))}
	}
	in.ShuttingDown = len(w.lines["shutting_down"]) > 0
	if l := w.one("watchdog"); l != "" {
		_, kv := fields(t, "watchdog "+l)
		in.Watchdog = Watchdog{Required: has(kv, "required"), Available: has(kv, "available"), Armed: has(kv, "armed"), Problem: kv["problem"]}
	}
	if l := w.one("lease"); l != "" {
		_, kv := fields(t, "lease "+l)
		if has(kv, "expiry") {
			in.LeaderExpiry = epoch(float64(num(t, kv, "expiry")))
		}
		in.RenewFailed = kv["renew_failed"]
		in.KeyLost = has(kv, "key_lost")
	}

	for _, line := range strings.Split(extra, "\n") {
		kind, rest, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch strings.TrimSpace(kind) {
		case "":
		case "peer":
			name, kv := fields(t, rest)
			in.PeersFetched = true
			in.Peers = append(in.Peers, Peer{
				Name: name, Reachable: has(kv, "reachable"), Answered: has(kv, "reachable") || has(kv, "answered"), Primary: has(kv, "primary"), Running: !has(kv, "stopped"),
				LSN: num(t, kv, "lsn"), Timeline: int(num(t, kv, "timeline")), NoFailover: has(kv, "nofailover"), FailoverPriority: int(num(t, kv, "priority")),
			})
		case "peers":
			in.PeersFetched = true
		case "acks":
			in.FailsafeChecked = true
			in.FailsafeAcks = map[string]bool{}
			for _, n := range strings.Fields(rest) {
				in.FailsafeAcks[n] = true
			}
		case "request":
			k, kv := fields(t, rest)
			r := &Request{Kind: RequestKind(k), Role: kv["role"], PostgresVersion: int(num(t, kv, "version")),
				RestartPending: has(kv, "pending"), Timeout: time.Duration(num(t, kv, "timeout")) * time.Second,
				Force: has(kv, "force"), FromLeader: has(kv, "from_leader")}
			if has(kv, "at") {
				at := epoch(float64(num(t, kv, "at")))
				r.Schedule = &at
			}
			in.Request = r
		case "postmaster_exited":
			in.PostmasterExited = true
		case "outcome":
			k, kv := fields(t, rest)
			in.Outcome = &Outcome{Kind: Kind(k), Err: kv["err"], Hook: kv["hook"], At: in.Now}
		default:
			t.Fatalf("unknown decide input %q", line)
		}
	}
	for i := range in.Peers {
		if in.Peers[i].FailoverPriority == 0 && !strings.Contains(extra, "priority=0") {
			in.Peers[i].FailoverPriority = 1
		}
	}
	return in
}

func (w *world) cluster(t *testing.T) *cluster.Cluster {
	kv := flags(t, w.one("cluster"))
	c := &cluster.Cluster{}
	if v, ok := kv["initialize"]; ok {
		if v == "empty" {
			v = ""
		}
		c.Initialize = &v
	}
	if has(kv, "config") {
		c.Config = &cluster.Raw{Data: []byte(`{}`), Version: "1"}
	}
	c.Status.Optime = num(t, kv, "optime")
	for _, sl := range strings.Split(kv["slots"], ",") {
		if name, lsn, ok := strings.Cut(sl, "@"); ok {
			if c.Status.Slots == nil {
				c.Status.Slots = map[string]int64{}
			}
			n, _ := strconv.ParseInt(lsn, 10, 64)
			c.Status.Slots[name] = n
		}
	}
	for _, n := range strings.Split(kv["failsafe"], ",") {
		if n != "" {
			if c.Failsafe == nil {
				c.Failsafe = cluster.Failsafe{}
			}
			c.Failsafe[n] = "http://" + n + ":8008/patroni"
		}
	}
	if has(kv, "sync_leader") {
		c.Sync = &cluster.SyncState{Leader: kv["sync_leader"], Version: "5", Quorum: int(num(t, kv, "quorum"))}
		for _, n := range strings.Split(kv["sync"], ",") {
			if n != "" {
				c.Sync.SyncStandby = append(c.Sync.SyncStandby, n)
			}
		}
	}
	if has(kv, "failover_leader") || has(kv, "failover_member") || has(kv, "failover_at") {
		c.Failover = &cluster.Failover{Leader: kv["failover_leader"], Candidate: kv["failover_member"], Version: "1"}
		if has(kv, "failover_at") {
			at := epoch(float64(num(t, kv, "failover_at")))
			c.Failover.ScheduledAt = &at
		}
	}
	if h, ok := kv["history"]; ok {
		c.HasHistory = true
		for _, part := range strings.Split(h, ",") {
			if part == "" {
				continue
			}
			tl, rest, _ := strings.Cut(part, ":")
			lsn, leader, _ := strings.Cut(rest, ":")
			tln, _ := strconv.Atoi(tl)
			lsnn, _ := strconv.ParseInt(lsn, 10, 64)
			c.History = append(c.History, cluster.HistoryLine{Timeline: tln, LSN: lsnn, NewLeader: leader})
		}
	}
	for _, line := range w.lines["member"] {
		name, mkv := fields(t, line)
		m := cluster.Member{Name: name, Role: mkv["role"], State: mkv["state"], Timeline: int(num(t, mkv, "timeline")),
			APIURL: "http://" + name + ":8008/patroni"}
		if has(mkv, "xlog") {
			x := num(t, mkv, "xlog")
			m.XLogLocation = &x
		}
		m.Tags.NoFailover = has(mkv, "nofailover")
		m.Tags.CloneFrom = has(mkv, "clonefrom")
		m.Tags.NoStream = has(mkv, "nostream")
		m.Tags.ReplicateFrom = mkv["replicatefrom"]
		m.Tags.NoSync = has(mkv, "nosync")
		if has(mkv, "sync_priority") {
			p := int(num(t, mkv, "sync_priority"))
			m.Tags.SyncPriority = &p
		}
		c.Members = append(c.Members, m)
	}
	if l, ok := kv["leader"]; ok {
		c.Leader = &cluster.Leader{Name: l, Member: cluster.Member{Name: l}}
		if m := c.Member(l); m != nil {
			c.Leader.Member = *m
		}
	}
	for _, line := range w.lines["raw"] {
		key, value, _ := strings.Cut(line, " ")
		if strings.HasPrefix(value, `"`) {
			v, err := strconv.Unquote(value)
			if err != nil {
				t.Fatalf("raw %s: %v", key, err)
			}
			value = v
		}
		readRaw(t, c, key, value)
	}
	return c
}

// readRaw puts one value as stored in the DCS into c, read as the agent
// reads it (cluster.FromDCS), malformed or not.
func readRaw(t *testing.T, c *cluster.Cluster, key, value string) {
	raw := &sdkdcs.Cluster{}
	name, isMember := strings.CutPrefix(key, "members/")
	switch {
	case key == sdkdcs.LeaderPath:
		raw.Leader = &sdkdcs.Leader{Name: value, Version: "9"}
	case isMember:
		raw.Members = []sdkdcs.Member{{Name: name, Data: []byte(value), Version: "9"}}
	default:
		raw.Put(sdkdcs.Key(key), &sdkdcs.Value{Data: []byte(value), Version: "9"})
	}
	p, _ := cluster.FromDCS(raw)
	switch key {
	case cluster.KeyInitialize:
		c.Initialize, c.InitializeVersion = p.Initialize, p.InitializeVersion
	case cluster.KeyLeader:
		c.Leader = p.Leader
		if m := c.Member(p.Leader.Name); m != nil && p.Leader.Name != "" {
			c.Leader.Member = *m
		}
	case cluster.KeyFailover:
		c.Failover = p.Failover
	case cluster.KeySync:
		c.Sync = p.Sync
	case cluster.KeyHistory:
		c.History, c.HasHistory = p.History, p.HasHistory
	case cluster.KeyStatus:
		c.Status = p.Status
	case cluster.KeyFailsafe:
		c.Failsafe = p.Failsafe
	default:
		if !isMember {
			t.Fatalf("raw: unknown key %q", key)
		}
		m := p.Members[0]
		if old := c.Member(name); old != nil {
			*old = m
		} else {
			c.Members = append(c.Members, m)
		}
		if l := c.Leader; l != nil && l.Name == name {
			l.Member = m
		}
	}
	for k, v := range p.Malformed {
		if c.Malformed == nil {
			c.Malformed = map[string]string{}
		}
		c.Malformed[k] = v
	}
}

func parseMemory(t *testing.T, s string) Memory {
	kv := flags(t, s)
	m := Memory{Bootstrapping: has(kv, "bootstrapping"), RewindFailed: has(kv, "rewind_failed"), Demoted: has(kv, "demoted"), Rewound: has(kv, "rewound"),
		HandOff: has(kv, "hand_off"), HandOffFailed: kv["hand_off_failed"], ManagesSyncNames: has(kv, "manages_sync_names")}
	for k, v := range kv {
		if name, ok := strings.CutPrefix(k, "added_"); ok {
			if m.QuorumAddedAt == nil {
				m.QuorumAddedAt = map[string]int64{}
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			m.QuorumAddedAt[name] = n
		}
	}
	if has(kv, "scheduled_restart") {
		m.ScheduledRestart = &ScheduledRestart{At: epoch(float64(num(t, kv, "scheduled_restart")))}
	}
	if has(kv, "crashed_at") {
		m.CrashedAt = epoch(float64(num(t, kv, "crashed_at")))
	}
	if has(kv, "bootstrap_failed") {
		m.BootstrapFailed = "an earlier failure"
	}
	if has(kv, "former_timeline") {
		// former_timeline=N:MEMBER, the member that started it.
		tl, of, _ := strings.Cut(kv["former_timeline"], ":")
		m.FormerTimeline, _ = strconv.Atoi(tl)
		m.FormerTimelineOf = of
	}
	if has(kv, "data_timeline") {
		// data_timeline=N:MEMBER, the member that started it.
		tl, of, _ := strings.Cut(kv["data_timeline"], ":")
		m.DataTimeline, _ = strconv.Atoi(tl)
		m.DataTimelineOf = of
	}
	m.Crashed, m.StartFailed = has(kv, "crashed"), has(kv, "start_failed")
	if has(kv, "failsafe_kept") {
		m.FailsafeKept = epoch(float64(num(t, kv, "failsafe_kept")))
	}
	return m
}

func render(d Decision) string {
	var b strings.Builder
	for _, a := range d.Actions {
		b.WriteString(string(a.Kind))
		if a.Member != "" {
			fmt.Fprintf(&b, " member=%s", a.Member)
		}
		if a.Mode != "" {
			fmt.Fprintf(&b, " mode=%s", a.Mode)
		}
		if a.Timeline > 0 {
			fmt.Fprintf(&b, " timeline=%d", a.Timeline)
		}
		if a.AsPrimary {
			b.WriteString(" as_primary")
		}
		if a.Kind == ActSetFailsafe {
			names := slices.Sorted(maps.Keys(a.Failsafe))
			fmt.Fprintf(&b, " members=[%s]", strings.Join(names, ","))
		}
		if a.Kind == ActWriteSync {
			fmt.Fprintf(&b, " members=[%s]", strings.Join(a.Members, ","))
			if a.Quorum > 0 {
				fmt.Fprintf(&b, " quorum=%d", a.Quorum)
			}
		}
		if a.Value != nil {
			fmt.Fprintf(&b, " value=%q", *a.Value)
		}
		if a.Timeout > 0 {
			fmt.Fprintf(&b, " timeout=%s", a.Timeout)
		}
		if p := a.Slots; p != nil {
			fmt.Fprintf(&b, " slots=[%s]", strings.Join(p.Members, ","))
			var perm []string
			for _, s := range p.Permanent {
				perm = append(perm, s.Name+":"+s.Type)
			}
			if len(perm) > 0 {
				fmt.Fprintf(&b, " permanent=[%s]", strings.Join(perm, ","))
			}
			if len(p.Ignore) > 0 {
				fmt.Fprintf(&b, " ignore=%d", len(p.Ignore))
			}
			if len(p.Advance) > 0 {
				var adv []string
				for _, k := range slices.Sorted(maps.Keys(p.Advance)) {
					adv = append(adv, fmt.Sprintf("%s@%d", k, p.Advance[k]))
				}
				fmt.Fprintf(&b, " advance=[%s]", strings.Join(adv, ","))
			}
			if p.CopyFrom != nil {
				fmt.Fprintf(&b, " copy_from=%s", p.CopyFrom.Name)
			}
		}
		b.WriteByte('\n')
	}
	if d.Gather.Peers {
		b.WriteString("gather: peers\n")
	}
	if d.Gather.Failsafe {
		b.WriteString("gather: failsafe\n")
	}
	if d.Waiting {
		b.WriteString("waiting\n")
	}
	if r := d.Reply; r != nil {
		fmt.Fprintf(&b, "reply: %s %q\n", replyNames[r.Status], r.Message)
	}
	fmt.Fprintf(&b, "reason: %s\n", d.Reason)
	var mem []string
	if d.Memory.Bootstrapping {
		mem = append(mem, "bootstrapping")
	}
	if !d.Memory.CrashedAt.IsZero() {
		mem = append(mem, fmt.Sprintf("crashed_at=%d", d.Memory.CrashedAt.Sub(epoch(0))/time.Second))
	}
	if d.Memory.RewindFailed {
		mem = append(mem, "rewind_failed")
	}
	if d.Memory.Demoted {
		mem = append(mem, "demoted")
	}
	if d.Memory.Rewound {
		mem = append(mem, "rewound")
	}
	if sr := d.Memory.ScheduledRestart; sr != nil {
		mem = append(mem, fmt.Sprintf("scheduled_restart=%d", sr.At.Sub(epoch(0))/time.Second))
	}
	if d.Memory.HandOff {
		mem = append(mem, "hand_off")
	}
	if d.Memory.ManagesSyncNames {
		mem = append(mem, "manages_sync_names")
	}
	for _, k := range slices.Sorted(maps.Keys(d.Memory.QuorumAddedAt)) {
		mem = append(mem, fmt.Sprintf("added_%s=%d", k, d.Memory.QuorumAddedAt[k]))
	}
	if d.Memory.HandOffFailed != "" {
		mem = append(mem, "hand_off_failed="+strconv.Quote(d.Memory.HandOffFailed))
	}
	if d.Memory.BootstrapFailed != "" {
		mem = append(mem, "bootstrap_failed")
	}
	if d.Memory.Crashed {
		mem = append(mem, "crashed")
	}
	if d.Memory.StartFailed {
		mem = append(mem, "start_failed")
	}
	if !d.Memory.PromoteRefusedAt.IsZero() {
		mem = append(mem, fmt.Sprintf("promote_refused=%d", d.Memory.PromoteRefusedAt.Sub(epoch(0))/time.Second))
	}
	if !d.Memory.FailsafeKept.IsZero() {
		mem = append(mem, fmt.Sprintf("failsafe_kept=%d", d.Memory.FailsafeKept.Sub(epoch(0))/time.Second))
	}
	if len(mem) > 0 {
		sort.Strings(mem)
		fmt.Fprintf(&b, "memory: %s\n", strings.Join(mem, " "))
	}
	return b.String()
}

var replyNames = map[ReplyStatus]string{
	ReplyDone: "done", ReplyStarted: "started", ReplyScheduled: "scheduled",
	ReplyRefused: "refused", ReplyConflict: "conflict", ReplyNotFound: "not_found",
}
