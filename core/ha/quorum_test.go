package ha

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// quorumSafe is the invariant quorum commit keeps: voters contain the
// synchronous set, and |V| <= q + numsync (every numsync-subset of S meets
// every (q+1)-subset of V); or there is no voter at all, and only the
// leader may be promoted. With nobody synchronous, nobody may claim a
// quorum either.
func quorumSafe(voters []string, q int, n int, sync []string) error {
	if len(voters) > 0 && len(minus(sync, voters)) > 0 {
		return fmt.Errorf("synchronous %v not all voters %v", sync, voters)
	}
	if len(sync) > 0 && len(voters) > q+n {
		return fmt.Errorf("|V|=%d > q=%d + numsync=%d", len(voters), q, n)
	}
	if n > len(sync) {
		return fmt.Errorf("numsync %d > |S| %d", n, len(sync))
	}
	return nil
}

// TestQuorumStepsKeepTheInvariant drives the primary's quorum decisions
// from random safe states, applying each decided step, and checks the
// invariant after every step, until the state settles.
func TestQuorumStepsKeepTheInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	names := []string{"pg2", "pg3", "pg4", "pg5"}
	for world := 0; world < 3000; world++ {
		// A random safe starting state.
		var sync []string
		for _, n := range names {
			if r.IntN(2) == 0 {
				sync = append(sync, n)
			}
		}
		voters := append([]string(nil), sync...)
		for _, n := range names {
			if !containsFold(voters, n) && r.IntN(3) == 0 {
				voters = append(voters, n)
			}
		}
		n := 0
		if len(sync) > 0 {
			n = 1 + r.IntN(len(sync))
		}
		q := max(len(voters)-n, 0)
		if len(sync) == 0 {
			q = 0
			if len(voters) > 0 {
				q = len(voters)
			}
		}
		q += r.IntN(2)
		if err := quorumSafe(voters, q, n, sync); err != nil {
			continue
		}
		var active []string
		for _, nm := range names {
			if r.IntN(3) > 0 {
				active = append(active, nm)
			}
		}
		wanted := 1 + r.IntN(3)
		lsn := int64(1000)
		mem := Memory{ManagesSyncNames: true}
		for step := 0; step < 20; step++ {
			in := quorumInput(voters, q, n, sync, active, wanted, lsn, mem)
			dec := Decide(in)
			mem = dec.Memory
			changed := false
			for _, a := range dec.Actions {
				switch a.Kind {
				case ActWriteSync:
					voters, q, changed = a.Members, a.Quorum, true
				case ActSetSyncStandbyNames:
					if a.Value != nil {
						n, sync = parseAny(*a.Value)
						changed = true
					}
				}
				if err := quorumSafe(voters, q, n, sync); err != nil && changed {
					t.Fatalf("world %d step %d: %v after %s (%s)", world, step, err, a.Kind, dec.Reason)
				}
			}
			if !changed {
				// Settled: the optimal state for the active set.
				wantN := min(wanted, len(active))
				if !sameNames(sync, active) || !sameNames(voters, active) || n != wantN || (len(active) > 0 && q != len(active)-wantN) {
					t.Fatalf("world %d settled at V=%v q=%d S=%v n=%d, want V=S=%v n=%d q=%d",
						world, voters, q, sync, n, active, wantN, len(active)-wantN)
				}
				break
			}
			lsn += 100
			if step == 19 {
				t.Fatalf("world %d did not settle: V=%v q=%d S=%v n=%d active=%v", world, voters, q, sync, n, active)
			}
		}
	}
}

func quorumInput(voters []string, q, n int, sync, active []string, wanted int, lsn int64, mem Memory) Input {
	c := &cluster.Cluster{Sync: &cluster.SyncState{Leader: "pg1", SyncStandby: voters, Quorum: q}}
	c.Leader = &cluster.Leader{Name: "pg1"}
	pg := Postgres{DataDir: DataDirInitialized, Running: true, Ready: true, Timeline: 1, LSN: lsn,
		SyncStandbyNames: anyStandbyNames(n, sync)}
	for _, a := range active {
		x := lsn
		c.Members = append(c.Members, cluster.Member{Name: a, State: "running", Role: "replica", XLogLocation: &x})
		// Standbys keep up: each flushed what the primary wrote.
		pg.Replication = append(pg.Replication, Replication{ApplicationName: a, State: "streaming", SyncState: "quorum", FlushLSN: lsn})
	}
	return Input{
		Now:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Name:     "pg1",
		Config:   Config{TTL: 30 * time.Second, LoopWait: 10 * time.Second, RetryTimeout: 10 * time.Second, SyncMode: SyncQuorum, SyncNodeCount: wanted},
		Cluster:  c,
		Postgres: pg,
		Memory:   mem,
	}
}
