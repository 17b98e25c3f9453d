package ha

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// TestRandomInputsKeepInvariants runs Decide on many generated worlds and
// checks the safety invariants on each, following every decision with the
// memory it returns for a few cycles.
func TestRandomInputsKeepInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"pg1", "pg2", "pg3"}
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	for i := 0; i < 20000; i++ {
		in := randomInput(r, names, pick)
		// What Gathering asks for, gathered, leaves the decision nothing
		// to wait for.
		if g, gathered := Gathering(in), in; true {
			gathered.PeersFetched = gathered.PeersFetched || (g.Peers && in.Cluster != nil)
			gathered.FailsafeChecked = gathered.FailsafeChecked || g.Failsafe
			if dec := Decide(gathered); dec.Waiting {
				t.Fatalf("world %d: waits for %+v although Gathering asked for %+v: %s", i, dec.Gather, g, dec.Reason)
			}
		}
		for cycle := 0; cycle < 3; cycle++ {
			dec := Decide(in)
			if err := CheckInvariants(in, dec); err != nil {
				t.Fatalf("world %d cycle %d: %v\ninput: %+v\ncluster: %+v\ndecision: %+v", i, cycle, err, in, in.Cluster, dec)
			}
			if dec.Reason == "" {
				t.Fatalf("world %d: decision without a reason: %+v", i, dec)
			}
			in.Memory = dec.Memory
			in.Now = in.Now.Add(time.Duration(r.IntN(20)) * time.Second)
			in.Outcome = nil
		}
	}
}

func randomInput(r *rand.Rand, names []string, pick func([]string) string) Input {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(1000)) * time.Second)
	in := Input{
		Now:  now,
		Name: pick(names),
		Config: Config{
			TTL: 30 * time.Second, LoopWait: 10 * time.Second, RetryTimeout: 10 * time.Second,
			MaximumLagOnFailover: int64(r.IntN(2000)), PrimaryStartTimeout: time.Duration(r.IntN(3)*150) * time.Second,
			CheckTimeline: r.IntN(2) == 0, Paused: r.IntN(5) == 0, UseSlots: r.IntN(2) == 0,
			UsePgRewind: r.IntN(2) == 0, RemoveDataDirectoryOnRewindFailure: r.IntN(2) == 0,
			RemoveDataDirectoryOnDivergedTimelines: r.IntN(2) == 0,
		},
		DCSLastSeen:  now.Add(-time.Duration(r.IntN(30)) * time.Second),
		ShuttingDown: r.IntN(10) == 0,
		Memory: Memory{
			Bootstrapping: r.IntN(5) == 0, RewindFailed: r.IntN(4) == 0, Demoted: r.IntN(3) == 0, Rewound: r.IntN(4) == 0,
		},
	}
	in.Config.Tags.NoFailover = r.IntN(4) == 0
	in.Config.SyncMode = []string{SyncOff, SyncOn, SyncQuorum}[r.IntN(3)]
	in.Config.SyncStrict = r.IntN(2) == 0
	in.Config.SyncNodeCount = 1 + r.IntN(2)
	if r.IntN(5) > 0 {
		c := &cluster.Cluster{}
		if r.IntN(4) > 0 {
			s := []string{"", "7001", "9999"}[r.IntN(3)]
			c.Initialize = &s
		}
		if r.IntN(3) > 0 {
			c.Config = &cluster.Raw{Data: []byte("{}")}
		}
		c.Status.Optime = int64(r.IntN(3000))
		if r.IntN(2) == 0 {
			c.Sync = &cluster.SyncState{Leader: pick(names), Quorum: r.IntN(3)}
			for _, n := range names {
				if r.IntN(2) == 0 {
					c.Sync.SyncStandby = append(c.Sync.SyncStandby, n)
				}
			}
		}
		if r.IntN(2) == 0 {
			c.HasHistory = true
			for tl := 1; tl < 1+r.IntN(3); tl++ {
				c.History = append(c.History, cluster.HistoryLine{Timeline: tl, LSN: int64(tl * 700)})
			}
		}
		for _, n := range names {
			if r.IntN(4) == 0 {
				continue
			}
			x := int64(r.IntN(3000))
			m := cluster.Member{Name: n, State: pick([]string{"running", "stopped", "starting"}), Role: pick([]string{"primary", "replica"}), XLogLocation: &x, Timeline: 1 + r.IntN(3)}
			m.Tags.CloneFrom = r.IntN(4) == 0
			m.Tags.NoFailover = r.IntN(4) == 0
			c.Members = append(c.Members, m)
		}
		if r.IntN(5) == 0 {
			c.Failover = &cluster.Failover{Candidate: pick(append([]string{""}, names...))}
			if r.IntN(2) == 0 {
				c.Failover.Leader = pick(names)
			}
		}
		if r.IntN(4) > 0 {
			l := pick(names)
			c.Leader = &cluster.Leader{Name: l, Member: cluster.Member{Name: l}}
			if m := c.Member(l); m != nil {
				c.Leader.Member = *m
			}
		}
		// Malformed values, read as cluster.FromDCS reads them.
		for _, k := range []string{cluster.KeyInitialize, cluster.KeyLeader, cluster.KeySync, cluster.KeyHistory, cluster.KeyStatus, cluster.KeyFailsafe, cluster.MemberKey(pick(names))} {
			if r.IntN(8) > 0 {
				continue
			}
			if c.Malformed == nil {
				c.Malformed = map[string]string{}
			}
			c.Malformed[k] = "garbage"
			switch k {
			case cluster.KeyInitialize:
				s := "garbage"
				c.Initialize = &s
			case cluster.KeyLeader:
				c.Leader = &cluster.Leader{}
			case cluster.KeySync:
				c.Sync = &cluster.SyncState{Version: "1"}
			case cluster.KeyHistory:
				c.History, c.HasHistory = nil, false
			case cluster.KeyStatus:
				c.Status = cluster.Status{}
			case cluster.KeyFailsafe:
				c.Failsafe = nil
			default:
				for i := range c.Members {
					if cluster.MemberKey(c.Members[i].Name) == k {
						c.Members[i] = cluster.Member{Name: c.Members[i].Name}
					}
				}
			}
		}
		in.Cluster = c
	} else {
		in.DCSError = "unreachable"
	}
	in.Postgres = Postgres{
		DataDir:         DataDir(r.IntN(4)),
		SysID:           []string{"", "7001", "9999"}[r.IntN(3)],
		ControlState:    []string{ControlInProduction, ControlShutDown, ControlShutDownInRecovery, ControlInArchiveRecovery, ControlUnknown}[r.IntN(5)],
		CheckpointLSN:   int64(r.IntN(3000)),
		MinRecoveryEnd:  int64(r.IntN(3000)),
		ControlTimeline: r.IntN(4),
		BackupLabel:     r.IntN(5) == 0,
		Running:         r.IntN(2) == 0,
		Ready:           r.IntN(4) > 0,
		InRecovery:      r.IntN(2) == 0,
		Timeline:        r.IntN(4),
		LSN:             int64(r.IntN(3000)),
		Upstream:        []string{"", "pg1", "pg2", "pg3"}[r.IntN(4)],
		Streaming:       r.IntN(2) == 0,
	}
	if !in.Postgres.Running {
		in.Postgres.Ready = false
	}
	if r.IntN(6) == 0 {
		in.Busy = &Busy{Kind: []Kind{ActBootstrap, ActStart, ActPromote, ActCreateReplica, ActRewind}[r.IntN(5)], Since: now.Add(-5 * time.Second)}
	}
	if r.IntN(6) == 0 {
		in.Outcome = &Outcome{Kind: []Kind{ActBootstrap, ActStart, ActRewind, ActCreateReplica}[r.IntN(4)], At: now}
		if r.IntN(2) == 0 {
			in.Outcome.Err = "failed"
		}
	}
	if r.IntN(2) == 0 {
		in.Watchdog = Watchdog{Required: r.IntN(2) == 0, Available: r.IntN(2) == 0, Armed: r.IntN(3) == 0}
	}
	if r.IntN(3) == 0 {
		in.LeaderExpiry = now.Add(time.Duration(r.IntN(40)-10) * time.Second)
	}
	if r.IntN(5) == 0 {
		in.RenewFailed = "renewing the leader key: context deadline exceeded"
		in.KeyLost = r.IntN(2) == 0
	}
	if r.IntN(3) == 0 {
		in.Config.FailsafeMode = true
		in.LastFailsafe = cluster.Failsafe{}
		for _, n := range names {
			if r.IntN(3) > 0 {
				in.LastFailsafe[n] = "http://" + n + ":8008/patroni"
			}
		}
		if r.IntN(2) == 0 {
			in.FailsafeChecked = true
			in.FailsafeAcks = map[string]bool{}
			for _, n := range names {
				in.FailsafeAcks[n] = r.IntN(4) > 0
			}
		}
	}
	if r.IntN(2) == 0 {
		in.PeersFetched = true
		for _, n := range names {
			in.Peers = append(in.Peers, Peer{Name: n, Reachable: r.IntN(3) > 0, Primary: r.IntN(4) == 0, LSN: int64(r.IntN(3000)), FailoverPriority: r.IntN(3)})
		}
	}
	return in
}

func TestInvariantsCatchAPromoteWithoutTheKey(t *testing.T) {
	in := Input{Name: "pg2", Cluster: &cluster.Cluster{Leader: &cluster.Leader{Name: "pg1"}}}
	bad := Decision{Actions: []Action{{Kind: ActPromote}}}
	if err := CheckInvariants(in, bad); err == nil {
		t.Fatal("a promote without the leader key passed the invariants")
	}
	in.Postgres = Postgres{Running: true, Ready: true}
	if err := CheckInvariants(in, Decision{}); err == nil {
		t.Fatal("a primary left running while another member leads passed the invariants")
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lapsed := Input{Name: "pg1", Now: now, Config: Config{TTL: 30 * time.Second}, LeaderExpiry: now.Add(time.Second),
		Postgres: Postgres{Running: true, Ready: true}, Cluster: &cluster.Cluster{Leader: &cluster.Leader{Name: "pg1"}}}
	if err := CheckInvariants(lapsed, Decision{Actions: []Action{{Kind: ActRenewLeader}}}); err == nil {
		t.Fatal("a primary kept running past its lease passed the invariants")
	}
	failed := lapsed
	failed.LeaderExpiry, failed.RenewFailed = now.Add(20*time.Second), "renewing the leader key: timeout"
	if err := CheckInvariants(failed, Decision{Actions: []Action{{Kind: ActRenewLeader}}}); err == nil {
		t.Fatal("a primary kept running after a failed renewal passed the invariants")
	}

}
