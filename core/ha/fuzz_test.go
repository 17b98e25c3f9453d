package ha

import (
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
)

const fuzzSysID = "7268616322854375442"

// FuzzDCSValues runs DCS values as any client may have written them through
// what the agent does with them: cluster.FromDCS (and
// config.ParseDynamicOver for /config), then Decide for several members,
// and checks the safety invariants on every decision.
func FuzzDCSValues(f *testing.F) {
	good := []string{
		fuzzSysID, // initialize
		`{"ttl":30,"loop_wait":10,"retry_timeout":10,"synchronous_mode":true,"synchronous_mode_strict":true,"failsafe_mode":true}`,
		"pg1", // leader
		`{"conn_url":"postgres://pg2:5432/postgres","api_url":"http://pg2:8008/patroni","state":"running","role":"replica","xlog_location":1000,"timeline":2}`,
		`{}`, // failover
		`{"leader":"pg1","sync_standby":"pg2","quorum":0}`, // sync
		`[[1,900,"no recovery target specified"]]`,         // history
		`{"optime":1000}`, // status
		`{"pg1":"http://pg1:8008/patroni","pg2":"http://pg2:8008/patroni","pg3":"http://pg3:8008/patroni"}`, // failsafe
	}
	with := func(i int, v string) {
		s := append([]string(nil), good...)
		s[i] = v
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8])
	}
	with(0, fuzzSysID)
	// The cases of issue 11: /config with loop_wait 0 and retry_timeout 0,
	// /sync malformed in strict synchronous mode, /initialize not a system
	// identifier; then the other keys.
	with(1, `{"ttl":30,"loop_wait":0,"retry_timeout":0,"synchronous_mode":true,"synchronous_mode_strict":true}`)
	with(5, `{"leader":"pg1","sync_standby":"pg2"`)
	with(0, "garbage")
	with(2, "")
	with(2, "pg1\n")
	with(3, `{not json`)
	with(4, "garbage")
	with(6, `{"timeline":2}`)
	with(7, `{"optime":"0/3000060"}`)
	with(8, `["pg1"]`)
	with(1, `garbage`)

	f.Fuzz(func(t *testing.T, initialize, cfg, leader, member, failover, sync, history, status, failsafe string) {
		val := func(s string) *sdkdcs.Value { return &sdkdcs.Value{Data: []byte(s), Version: "7"} }
		raw := &sdkdcs.Cluster{
			Initialize: val(initialize),
			Config:     val(cfg),
			Leader:     &sdkdcs.Leader{Name: leader, Version: "7"},
			Members: []sdkdcs.Member{
				{Name: "pg1", Data: []byte(`{"api_url":"http://pg1:8008/patroni","state":"running","role":"primary","xlog_location":1000,"timeline":2}`)},
				{Name: "pg2", Data: []byte(member)},
				{Name: "pg3", Data: []byte(`{"api_url":"http://pg3:8008/patroni","state":"running","role":"replica","xlog_location":1200,"timeline":2,"tags":{"clonefrom":true}}`)},
			},
			Failover: val(failover),
			Sync:     val(sync),
			History:  val(history),
			Status:   val(status),
			Failsafe: val(failsafe),
		}
		c, problems := cluster.FromDCS(raw)
		if len(problems) != len(c.Malformed) {
			t.Fatalf("%d problems, %d malformed keys: %v %v", len(problems), len(c.Malformed), problems, c.Malformed)
		}
		if c.IsMalformed(cluster.KeyInitialize) && c.SysID() != "" {
			t.Fatalf("malformed /initialize %q read as system identifier %q", initialize, c.SysID())
		}
		// The same values after the leader key expired: the leader race.
		raw.Leader = nil
		leaderless, _ := cluster.FromDCS(raw)

		// What the agent runs with after reading /config over a strict
		// synchronous configuration in effect.
		inEffect := config.DefaultDynamic()
		inEffect.SynchronousMode, inEffect.SynchronousStrict, inEffect.FailsafeMode = config.SyncOn, true, true
		dyn, _ := config.ParseDynamicOver([]byte(cfg), inEffect)
		if ps := dyn.Validate(); len(ps) > 0 {
			t.Fatalf("/config %q gave an invalid configuration in effect: %v", cfg, ps)
		}
		fromDCS := fuzzConfig(dyn)
		strict := fromDCS
		strict.SyncMode, strict.SyncStrict, strict.FailsafeMode, strict.CheckTimeline = SyncOn, true, true, true
		quorum := strict
		quorum.SyncMode = SyncQuorum

		now := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
		primary := Postgres{DataDir: DataDirInitialized, SysID: fuzzSysID, ControlState: ControlInProduction, ControlTimeline: 2,
			Running: true, Ready: true, Timeline: 2, LSN: 1000,
			Replication:      []Replication{{ApplicationName: "pg2", State: "streaming", SyncState: "sync", FlushLSN: 1000}, {ApplicationName: "pg3", State: "streaming", SyncState: "async", FlushLSN: 1000}},
			SyncStandbyNames: "pg2"}
		replica := Postgres{DataDir: DataDirInitialized, SysID: fuzzSysID, ControlState: ControlInArchiveRecovery, ControlTimeline: 2,
			Running: true, Ready: true, InRecovery: true, Timeline: 2, LSN: 1200, Upstream: "pg1", Streaming: true}
		stopped := Postgres{DataDir: DataDirInitialized, SysID: fuzzSysID, ControlState: ControlShutDown, ControlTimeline: 1, CheckpointLSN: 950}
		peers := []Peer{{Name: "pg1"}, {Name: "pg2", Reachable: true, Running: true, LSN: 1000, FailoverPriority: 1}, {Name: "pg3", Reachable: true, Running: true, LSN: 1200, FailoverPriority: 1}}
		inputs := []Input{
			{Name: "pg1", Postgres: primary, Memory: Memory{ManagesSyncNames: true}},
			{Name: "pg2", Postgres: replica},
			{Name: "pg3", Postgres: replica},
			{Name: "pg3", Postgres: stopped},
			{Name: "pg4", Postgres: Postgres{DataDir: DataDirEmpty}},
			{Name: "pg1", Postgres: primary, Memory: Memory{Bootstrapping: true}},
		}
		for _, cfg := range []Config{fromDCS, strict, quorum} {
			for _, in := range inputs {
				in.Now, in.Config, in.Cluster, in.DCSLastSeen = now, cfg, c, now
				in.LastFailsafe = c.Failsafe
				decideAndCheck(t, in, peers)
				in.Cluster = leaderless
				decideAndCheck(t, in, peers)
				// The same member with the DCS gone since this read.
				in.Cluster, in.DCSError, in.DCSLastSeen = nil, "connection refused", now.Add(-time.Minute)
				decideAndCheck(t, in, peers)
			}
		}
	})
}

// decideAndCheck runs Decide as the controller's cycles do and checks the
// invariants of each decision: with what Gathering asks for gathered before
// the decision (it then never waits), and without it (a decision that
// waits gets what it asked for in the next one).
func decideAndCheck(t *testing.T, in Input, peers []Peer) {
	t.Helper()
	gathered := in
	if g := Gathering(in); true {
		if g.Peers && in.Cluster != nil {
			gathered.Peers, gathered.PeersFetched = peers, true
		}
		gathered.FailsafeChecked = g.Failsafe
	}
	if dec := checkedDecision(t, gathered); dec.Waiting {
		t.Fatalf("%s: the decision waits for %+v although Gathering asked for %+v: %s", in.Name, dec.Gather, Gathering(in), dec.Reason)
	}
	for range 2 {
		dec := checkedDecision(t, in)
		if !dec.Waiting {
			return
		}
		if dec.Gather.Peers {
			in.Peers, in.PeersFetched = peers, true
		}
		if dec.Gather.Failsafe {
			in.FailsafeChecked = true
		}
		in.Memory = dec.Memory
	}
	t.Fatalf("%s: a decision still waits after its gathering: %+v", in.Name, in)
}

func checkedDecision(t *testing.T, in Input) Decision {
	t.Helper()
	dec := Decide(in)
	if err := CheckInvariants(in, dec); err != nil {
		t.Fatalf("%s: %v\ncluster: %+v\ndecision: %+v", in.Name, err, in.Cluster, dec)
	}
	if dec.Reason == "" {
		t.Fatalf("%s: a decision without a reason: %+v", in.Name, dec)
	}
	return dec
}

// fuzzConfig maps the dynamic configuration onto Decide's, as the
// controller does for the keys Decide reads.
func fuzzConfig(d config.Dynamic) Config {
	mode := SyncOff
	switch d.SynchronousMode {
	case config.SyncOn:
		mode = SyncOn
	case config.SyncQuorum:
		mode = SyncQuorum
	}
	return Config{
		TTL: d.TTL.Duration(), LoopWait: d.LoopWait.Duration(), RetryTimeout: d.RetryTimeout.Duration(),
		MaximumLagOnFailover: int64(d.MaximumLagOnFailover), PrimaryStartTimeout: d.PrimaryStartTimeout.Duration(),
		CheckTimeline: d.CheckTimeline, Paused: d.Pause, UseSlots: d.PostgreSQL.UseSlots, UsePgRewind: d.PostgreSQL.UsePgRewind,
		SyncMode: mode, SyncStrict: d.SynchronousStrict, SyncNodeCount: d.SynchronousNodeCount,
		MaximumLagOnSyncNode: int64(d.MaximumLagOnSyncnode), FailsafeMode: d.FailsafeMode, KeepMemberSlots: d.MemberSlotsTTL > 0,
	}
}
