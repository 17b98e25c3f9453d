package dcs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/core/cluster"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t *testing.T, mem *dcstest.MemoryStore, name string) *Store {
	t.Helper()
	b := mem.NewBackend()
	if err := b.Configure(context.Background(), sdkdcs.ConfigureRequest{Scope: "demo", Member: name, TTL: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s := New(b, hclog.NewNullLogger(), 2*time.Second)
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestReadDecodesAndReportsMalformedValues(t *testing.T) {
	mem := dcstest.NewMemoryStore()
	defer mem.Stop()
	ctx := context.Background()
	a := newStore(t, mem, "pg1")
	if err := a.RaceInitialize(ctx); err != nil {
		t.Fatal(err)
	}
	b := newStore(t, mem, "pg2")
	if err := b.RaceInitialize(ctx); !errors.Is(err, sdkdcs.ErrExists) {
		t.Fatalf("second initialize: want ErrExists, got %v", err)
	}
	if err := a.AcquireLeader(ctx); err != nil {
		t.Fatal(err)
	}
	x := int64(42)
	if err := a.TouchMember(ctx, cluster.Member{Name: "pg1", State: "running", Role: "primary", XLogLocation: &x}); err != nil {
		t.Fatal(err)
	}
	if err := b.Backend().TouchMember(ctx, []byte("{broken")); err != nil {
		t.Fatal(err)
	}
	c, problems, err := b.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.LeaderName() != "pg1" || c.Leader.Member.LSN() != 42 || c.SysID() != "" || c.Initialize == nil {
		t.Fatalf("read %+v", c)
	}
	if len(problems) != 1 {
		t.Fatalf("want one problem for members/pg2, got %v", problems)
	}
	if err := a.WriteInitialize(ctx, "7001", c.InitializeVersion); err != nil {
		t.Fatal(err)
	}
	if c, _, _ = b.Read(ctx); c.SysID() != "7001" {
		t.Fatalf("sysid %q", c.SysID())
	}
}

func TestStatusWrittenOnlyOnChange(t *testing.T) {
	mem := dcstest.NewMemoryStore()
	defer mem.Stop()
	ctx := context.Background()
	a := newStore(t, mem, "pg1")
	if err := a.AcquireLeader(ctx); err != nil {
		t.Fatal(err)
	}
	version := func() string {
		c, err := a.Backend().GetCluster(ctx)
		if err != nil || c.Status == nil {
			t.Fatalf("status missing: %v", err)
		}
		return c.Status.Version
	}
	if err := a.WriteStatus(ctx, cluster.Status{Optime: 100}); err != nil {
		t.Fatal(err)
	}
	v1 := version()
	if err := a.WriteStatus(ctx, cluster.Status{Optime: 100}); err != nil {
		t.Fatal(err)
	}
	if v2 := version(); v2 != v1 {
		t.Fatalf("unchanged status rewritten (%s -> %s)", v1, v2)
	}
	if err := a.WriteStatus(ctx, cluster.Status{Optime: 200}); err != nil {
		t.Fatal(err)
	}
	if v3 := version(); v3 == v1 {
		t.Fatal("changed status not written")
	}

	// Another client overwrites /status with garbage: once a read has seen
	// it, the next renewal writes the unchanged value back (an idle
	// leader's position does not change, and while /status is malformed
	// no replica can check its lag in a leader race).
	if err := a.Backend().Set(ctx, sdkdcs.KeyStatus, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteStatus(ctx, cluster.Status{Optime: 200}); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := a.Read(ctx); !c.IsMalformed(cluster.KeyStatus) {
		t.Fatal("garbage /status read as well-formed")
	}
	if err := a.WriteStatus(ctx, cluster.Status{Optime: 200}); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := a.Read(ctx); c.IsMalformed(cluster.KeyStatus) || c.Status.Optime != 200 {
		t.Fatalf("/status not written back: %+v", c.Status)
	}
}

func TestWatchWakesOnLeaderChange(t *testing.T) {
	mem := dcstest.NewMemoryStore()
	defer mem.Stop()
	a, b := newStore(t, mem, "pg1"), newStore(t, mem, "pg2")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Watch(ctx) }()
	defer func() { cancel(); <-done }()

	// Member writes do not wake the loop; leader changes do.
	deadline := time.After(5 * time.Second)
	for {
		if err := a.AcquireLeader(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-b.Wake():
		case <-time.After(200 * time.Millisecond):
			// The watch may not be open yet: release and try again.
			_ = a.ReleaseLeader(context.Background())
			select {
			case <-deadline:
				t.Fatal("no wake-up for the leader key")
			default:
			}
			continue
		}
		break
	}
	drain(b.Wake())
	if err := a.TouchMember(context.Background(), cluster.Member{Name: "pg1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Wake():
		t.Fatal("a member write woke the loop")
	case <-time.After(200 * time.Millisecond):
	}
	if err := a.ReleaseLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Wake():
	case <-time.After(2 * time.Second):
		t.Fatal("no wake-up when the leader key was deleted")
	}
}

func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// countingBackend counts TouchMember calls reaching the backend.
type countingBackend struct {
	sdkdcs.Backend
	touches int
}

func (b *countingBackend) TouchMember(ctx context.Context, data []byte) error {
	b.touches++
	return b.Backend.TouchMember(ctx, data)
}

func TestTouchMemberSkipsUnchangedWithinATTLThird(t *testing.T) {
	mem := dcstest.NewMemoryStore()
	defer mem.Stop()
	ctx := context.Background()
	b := &countingBackend{Backend: mem.NewBackend()}
	if err := b.Configure(ctx, sdkdcs.ConfigureRequest{Scope: "demo", Member: "pg1", TTL: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	s := New(b, hclog.NewNullLogger(), 2*time.Second)
	defer func() { _ = s.Close(ctx) }()
	s.SetTiming(30*time.Second, time.Second)
	m := cluster.Member{Name: "pg1", State: "running", Role: "replica"}
	cycle := func(m cluster.Member) {
		t.Helper()
		if _, _, err := s.Read(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	cycle(m)
	cycle(m)
	cycle(m)
	if b.touches != 1 {
		t.Fatalf("unchanged member written %d times in three cycles, want once", b.touches)
	}
	m.State = "stopped"
	cycle(m)
	if b.touches != 2 {
		t.Fatalf("changed member data not written (%d calls)", b.touches)
	}
	// Gone from the DCS (deleted by someone else): written again at once.
	other := mem.NewBackend()
	if err := other.Configure(ctx, sdkdcs.ConfigureRequest{Scope: "demo", Member: "pg2", TTL: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteCluster(ctx); err != nil {
		t.Fatal(err)
	}
	_ = other.Close(ctx)
	cycle(m)
	if b.touches != 3 {
		t.Fatalf("member key missing from the DCS not written again (%d calls)", b.touches)
	}
	// Due: the next cycle would come later than ttl/3 after the last call.
	s.mu.Lock()
	s.touchedAt = s.touchedAt.Add(-9 * time.Second)
	s.mu.Unlock()
	cycle(m)
	if b.touches != 4 {
		t.Fatalf("member not refreshed once ttl/3 came near (%d calls)", b.touches)
	}
	// Patroni's default timing: every cycle calls.
	s.SetTiming(30*time.Second, 10*time.Second)
	cycle(m)
	if b.touches != 5 {
		t.Fatalf("member not refreshed with loop_wait = ttl/3 (%d calls)", b.touches)
	}
}
