package ha

import (
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// The member's published state follows what happened to PostgreSQL across
// decisions: a postmaster that exited unasked is "crashed" until a start,
// a failed start "start failed" until one succeeds.
func TestPublishedStateHistory(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down := Postgres{DataDir: DataDirInitialized, SysID: "7001", Timeline: 1}
	up := down
	up.Running, up.Ready = true, true
	sysid := "7001"
	clu := &cluster.Cluster{Initialize: &sysid}
	in := Input{Now: now, Name: "pg1", Config: Config{TTL: 30 * time.Second, LoopWait: 10 * time.Second, RetryTimeout: 10 * time.Second},
		Cluster: clu, DCSLastSeen: now, Postgres: up}
	pause := func(on bool) func(*Input) { return func(in *Input) { in.Config.Paused = on } }
	steps := []struct {
		what   string
		change func(*Input)
		state  string
	}{
		{"running", func(*Input) {}, "running"},
		{"postmaster exits while paused", func(in *Input) { pause(true)(in); in.Postgres, in.PostmasterExited = down, true }, "crashed"},
		{"still down", func(*Input) {}, "crashed"},
		{"resumed: started", pause(false), "starting"},
		{"start failed, paused", func(in *Input) { pause(true)(in); in.Outcome = &Outcome{Kind: ActStart, Err: "boom"} }, "start failed"},
		{"resumed: started again", pause(false), "starting"},
		{"start succeeded", func(in *Input) { in.Postgres, in.Outcome = up, &Outcome{Kind: ActStart} }, "running"},
		{"stopped by a restart, paused", func(in *Input) { pause(true)(in); in.Postgres, in.Outcome = down, &Outcome{Kind: ActRestart} }, "stopped"},
	}
	for _, s := range steps {
		in.PostmasterExited, in.Outcome = false, nil
		s.change(&in)
		dec := Decide(in)
		// Published after the actions: a start runs in the background.
		var busy *Busy
		for _, a := range dec.Actions {
			if a.Kind.Async() {
				busy = &Busy{Kind: a.Kind, Since: now}
			}
		}
		if got := StateName(busy, in.Postgres, dec.Memory); got != s.state {
			t.Fatalf("%s: state %q, want %q (reason: %s)", s.what, got, s.state, dec.Reason)
		}
		in.Memory = dec.Memory
	}
}

func TestRoleNameKeepsTheLastRole(t *testing.T) {
	up := Postgres{DataDir: DataDirInitialized, Running: true, Ready: true}
	mem := Memory{}
	mem.Role = RoleName(up, mem)
	if mem.Role != cluster.RolePrimary {
		t.Fatalf("running primary: %q", mem.Role)
	}
	stopped := Postgres{DataDir: DataDirInitialized}
	if r := RoleName(stopped, mem); r != cluster.RolePrimary {
		t.Fatalf("stopped former primary: %q, want it to keep primary", r)
	}
	mem.Demoted = true
	if r := RoleName(stopped, mem); r != cluster.RoleDemoted {
		t.Fatalf("stopped after a demotion: %q", r)
	}
	if r := RoleName(Postgres{DataDir: DataDirEmpty}, mem); r != cluster.RoleUninitialized {
		t.Fatalf("empty data directory: %q", r)
	}
}

func TestLeaseStillCounts(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ttl := 30 * time.Second
	primary := Postgres{DataDir: DataDirInitialized, Running: true, Ready: true}
	replica := primary
	replica.InRecovery = true
	ranOut := now.Add(time.Second) // within the stop margin
	for _, c := range []struct {
		what    string
		expiry  time.Time
		stopped bool
		pg      Postgres
		paused  bool
		busy    bool
		want    bool
	}{
		{"no lease", time.Time{}, false, primary, false, false, false},
		{"lease running", now.Add(ttl), false, primary, false, false, true},
		{"stopped", now.Add(ttl), true, Postgres{}, false, false, false},
		{"ran out, primary still runs", ranOut, false, primary, false, false, true},
		{"ran out, replica", ranOut, false, replica, false, false, false},
		{"ran out, paused", ranOut, false, primary, true, false, false},
		{"ran out, action in progress", ranOut, false, replica, false, true, true},
	} {
		if got := LeaseStillCounts(c.expiry, ttl, now, c.stopped, c.pg, c.paused, c.busy); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}
