package etcd3

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

const testPrefix = "/service/pg/"

func kv(key, value string, mod, lease int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(testPrefix + key), Value: []byte(value), ModRevision: mod, CreateRevision: mod, Lease: lease}
}

func put(k *mvccpb.KeyValue) *mvccpb.Event { return &mvccpb.Event{Type: mvccpb.PUT, Kv: k} }

func del(key string, rev int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(testPrefix + key), ModRevision: rev}}
}

func events(rev int64, evs ...*mvccpb.Event) *pb.WatchResponse {
	return &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: rev}, Events: evs}
}

func progressAnswer(rev int64) *pb.WatchResponse {
	return &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: rev}, WatchId: clientv3.InvalidWatchID}
}

// synced returns a cache in sync at snapshot revision 10 whose progress
// requests are answered by answer (nil: never answered).
func syncedCache(t *testing.T, proven bool, answer func(n uint64) *pb.WatchResponse) (*cache, *stream) {
	t.Helper()
	c := newCache(hclog.NewNullLogger(), nil, testPrefix, 0, 0)
	st := &stream{snapshotRev: 10, proven: proven}
	var sent atomic.Uint64
	st.end = func() {}
	st.send = func(*pb.WatchRequest) error {
		n := sent.Add(1)
		if answer != nil {
			if wr := answer(n); wr != nil {
				// The answer arrives on the session's goroutine.
				done := make(chan struct{})
				go func() {
					defer close(done)
					c.apply(st, wr)
				}()
				t.Cleanup(func() { <-done })
			}
		}
		return nil
	}
	c.install(st, []*mvccpb.KeyValue{kv("leader", "pg1", 5, 77), kv("members/pg1", `{"a":1}`, 6, 77), kv("config", "{}", 3, 0)})
	return c, st
}

func keys(kvs []*mvccpb.KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, string(kv.Key)+"="+string(kv.Value))
	}
	return out
}

func TestCacheAppliesEventsAfterSnapshot(t *testing.T) {
	c, st := syncedCache(t, false, nil)
	sub, err := c.subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Events at or below the snapshot's revision are in it already.
	c.apply(st, events(12,
		put(kv("config", `{"old":true}`, 9, 0)),
		put(kv("status", `{"optime":1}`, 11, 0)),
		del("leader", 12)))
	if !st.proven {
		t.Fatal("an event did not prove the watch in sync")
	}
	got, _ := sub.take()
	want := []dcs.Event{
		{Type: dcs.EventPut, Path: "status", Version: "11"},
		{Type: dcs.EventDelete, Path: "leader", Version: "12"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	if c.rev != 12 {
		t.Fatalf("rev %d after events up to 12", c.rev)
	}
	// The copy, read the way GetCluster reads it (sorted by key).
	c.mu.Lock()
	kvs := make([]*mvccpb.KeyValue, 0, len(c.kvs))
	for _, k := range []string{"config", "members/pg1", "status"} {
		kvs = append(kvs, c.kvs[testPrefix+k])
	}
	c.mu.Unlock()
	if want := []string{testPrefix + "config={}", testPrefix + `members/pg1={"a":1}`, testPrefix + `status={"optime":1}`}; !reflect.DeepEqual(keys(kvs), want) {
		t.Fatalf("copy %q, want %q", keys(kvs), want)
	}
}

// TestCacheLateEventApplied: an event that arrives after a progress answer
// covering its revision (etcd issue 15220) is applied, not dropped as old.
func TestCacheLateEventApplied(t *testing.T) {
	c, st := syncedCache(t, true, nil)
	c.apply(st, progressAnswer(20))
	if c.rev != 20 || st.answered != 1 {
		t.Fatalf("after a progress answer at 20: rev %d, answered %d", c.rev, st.answered)
	}
	c.apply(st, events(15, put(kv("failover", `{"leader":"pg1"}`, 15, 0))))
	if !c.current(testPrefix+"failover", []byte(`{"leader":"pg1"}`), 0, 20) {
		t.Fatal("the late event was dropped")
	}
}

func TestCacheCurrent(t *testing.T) {
	c, _ := syncedCache(t, true, nil)
	key := testPrefix + "members/pg1"
	for _, tc := range []struct {
		name  string
		value string
		lease clientv3.LeaseID
		rev   int64
		want  bool
	}{
		{"same value and lease", `{"a":1}`, 77, 10, true},
		{"other value", `{"a":2}`, 77, 10, false},
		{"other lease", `{"a":1}`, 78, 10, false},
		{"copy older than the revision asked for", `{"a":1}`, 77, 11, false},
	} {
		if got := c.current(key, []byte(tc.value), tc.lease, tc.rev); got != tc.want {
			t.Errorf("%s: current = %v, want %v", tc.name, got, tc.want)
		}
	}
	c.mu.Lock()
	c.unsyncLocked(errors.New("broken"))
	c.mu.Unlock()
	if c.current(key, []byte(`{"a":1}`), 77, 0) {
		t.Error("a copy out of sync is current")
	}
}

func TestCacheRead(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		c, _ := syncedCache(t, true, func(uint64) *pb.WatchResponse { return progressAnswer(30) })
		kvs, ok := c.read(context.Background(), 25)
		if !ok {
			t.Fatal("read did not answer from the cache")
		}
		want := []string{testPrefix + "config={}", testPrefix + "leader=pg1", testPrefix + `members/pg1={"a":1}`}
		if !reflect.DeepEqual(keys(kvs), want) {
			t.Fatalf("read %q, want %q", keys(kvs), want)
		}
	})
	t.Run("revision not reached", func(t *testing.T) {
		c, _ := syncedCache(t, true, func(uint64) *pb.WatchResponse { return progressAnswer(30) })
		if _, ok := c.read(context.Background(), 31); ok {
			t.Fatal("read answered from a copy older than a revision already seen")
		}
	})
	t.Run("not proven", func(t *testing.T) {
		var asked atomic.Bool
		c, _ := syncedCache(t, false, func(uint64) *pb.WatchResponse { asked.Store(true); return progressAnswer(30) })
		if _, ok := c.read(context.Background(), 0); ok || asked.Load() {
			t.Fatalf("a watch not proven in sync: read ok %v, progress asked %v", ok, asked.Load())
		}
	})
	t.Run("unanswered", func(t *testing.T) {
		var ended atomic.Bool
		c, st := syncedCache(t, true, nil)
		st.end = func() { ended.Store(true) }
		if _, ok := c.read(context.Background(), 0); ok {
			t.Fatal("read answered without a progress answer")
		}
		if ended.Load() {
			t.Fatal("a late answer ended the session at once")
		}
		// The answer arrives late: the numbering still matches.
		c.apply(st, progressAnswer(11))
		if _, ok := c.read(context.Background(), 0); ok || ended.Load() {
			t.Fatalf("second read without its answer: ok %v, session ended %v", ok, ended.Load())
		}
		// Its answer never comes (etcd dropped the request).
		c.mu.Lock()
		st.awaitedSince = st.awaitedSince.Add(-maxUnanswered)
		c.mu.Unlock()
		if _, ok := c.read(context.Background(), 0); ok || !ended.Load() {
			t.Fatalf("read after a request stayed unanswered for %v: ok %v, session ended %v", maxUnanswered, ok, ended.Load())
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		var ended atomic.Bool
		c, st := syncedCache(t, true, nil)
		st.end = func() { ended.Store(true) }
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, ok := c.read(ctx, 0); ok {
			t.Fatal("read answered with a cancelled context")
		}
		if ended.Load() {
			t.Fatal("the caller's cancellation ended the session")
		}
	})
}

func TestCacheUnsyncEndsSubscribers(t *testing.T) {
	c, _ := syncedCache(t, true, nil)
	sub, err := c.subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.unsyncLocked(errors.Join(dcs.ErrUnavailable, errors.New("stream broke")))
	c.mu.Unlock()
	select {
	case <-sub.wake:
	default:
		t.Fatal("subscriber not woken")
	}
	if _, err := sub.take(); !errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("feed ended with %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.subscribe(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribing to a copy out of sync: %v", err)
	}
}
