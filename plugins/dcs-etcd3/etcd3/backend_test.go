package etcd3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func configured(t *testing.T, retryTimeout time.Duration) *Backend {
	t.Helper()
	b := New(nil)
	err := b.Configure(context.Background(), dcs.ConfigureRequest{
		Scope:        "s",
		Member:       "a",
		TTL:          3 * time.Second,
		RetryTimeout: retryTimeout,
		Config:       []byte(fmt.Sprintf(`{"hosts":["127.0.0.1:%d"]}`, closedPort(t))),
	})
	if err != nil {
		t.Fatalf("Configure must not need a reachable etcd: %v", err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// operations calls every operation that talks to etcd.
func operations(b *Backend) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"GetCluster":    func(ctx context.Context) error { _, err := b.GetCluster(ctx); return err },
		"AcquireLeader": func(ctx context.Context) error { _, err := b.AcquireLeader(ctx); return err },
		"RenewLeader":   b.RenewLeader,
		"TakeLeader":    b.TakeLeader,
		"DeleteLeader":  b.DeleteLeader,
		"TouchMember":   func(ctx context.Context) error { return b.TouchMember(ctx, []byte(`{}`)) },
		"CompareAndSet": func(ctx context.Context) error {
			_, err := b.CompareAndSet(ctx, dcs.KeyConfig, []byte(`{}`), "7")
			return err
		},
		"CompareAndDelete": func(ctx context.Context) error { return b.CompareAndDelete(ctx, dcs.KeySync, "7") },
		"Set":              func(ctx context.Context) error { return b.Set(ctx, dcs.KeyStatus, []byte(`{}`)) },
		"DeleteCluster":    b.DeleteCluster,
		"Watch":            func(ctx context.Context) error { return b.Watch(ctx, func(dcs.Event) {}) },
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	const retryTimeout = 300 * time.Millisecond
	b := configured(t, retryTimeout)
	forEachOp(t, b, func(t *testing.T, name string, op func(context.Context) error) {
		start := time.Now()
		err := op(context.Background())
		if !errors.Is(err, dcs.ErrUnavailable) {
			t.Errorf("%s: want ErrUnavailable, got %v", name, err)
		}
		if d := time.Since(start); d > retryTimeout+2*time.Second {
			t.Errorf("%s took %v with a retry timeout of %v", name, d, retryTimeout)
		}
	})
}

// forEachOp runs fn for every operation, in parallel subtests.
func forEachOp(t *testing.T, b *Backend, fn func(t *testing.T, name string, op func(context.Context) error)) {
	t.Run("ops", func(t *testing.T) {
		for name, op := range operations(b) {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fn(t, name, op)
			})
		}
	})
}

func TestCallerCancellation(t *testing.T) {
	b := configured(t, time.Minute)
	forEachOp(t, b, func(t *testing.T, name string, op func(context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := op(ctx)
		cancel()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s ignored its context: returned after %v", name, d)
		}
		// Watch returns nil once its context ends; the others fail.
		if name != "Watch" && err == nil {
			t.Errorf("%s: no error", name)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := b.GetCluster(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("cancelled by the caller: want context.Canceled only, got %v", err)
	}
	if err := b.Watch(ctx, func(dcs.Event) {}); err != nil {
		t.Fatalf("Watch with a cancelled context: want nil, got %v", err)
	}
}

func TestNotConfiguredAndClosed(t *testing.T) {
	b := New(nil)
	for name, op := range operations(b) {
		if err := op(context.Background()); !errors.Is(err, dcs.ErrUnavailable) {
			t.Errorf("%s before Configure: want ErrUnavailable, got %v", name, err)
		}
	}
	b = configured(t, time.Second)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, op := range operations(b) {
		if err := op(context.Background()); !errors.Is(err, dcs.ErrUnavailable) {
			t.Errorf("%s after Close: want ErrUnavailable, got %v", name, err)
		}
	}
}

func TestConfigureRejects(t *testing.T) {
	b := New(nil)
	req := dcs.ConfigureRequest{Scope: "s", Member: "a", TTL: time.Second, Config: []byte(`{"hosts":["a:1"],"nope":1}`)}
	var cfgErr *sdk.ConfigError
	if err := b.Configure(context.Background(), req); !errors.As(err, &cfgErr) {
		t.Fatalf("bad section: want *sdk.ConfigError, got %v", err)
	}
	req.Config = []byte(`{"hosts":["a:1"]}`)
	for name, mutate := range map[string]func(r *dcs.ConfigureRequest){
		"no ttl":    func(r *dcs.ConfigureRequest) { r.TTL = 0 },
		"no scope":  func(r *dcs.ConfigureRequest) { r.Scope = "" },
		"no member": func(r *dcs.ConfigureRequest) { r.Member = "" },
	} {
		r := req
		mutate(&r)
		if err := b.Configure(context.Background(), r); err == nil {
			t.Errorf("%s: Configure accepted it", name)
		}
	}
}

func TestTTLSeconds(t *testing.T) {
	for in, want := range map[time.Duration]int64{
		time.Millisecond:        1,
		3 * time.Second:         3,
		2500 * time.Millisecond: 3,
		30 * time.Second:        30,
	} {
		if got, err := ttlSeconds(in); err != nil || got != want {
			t.Errorf("ttlSeconds(%v) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseCluster(t *testing.T) {
	const p = "/service/pg/"
	kv := func(key, value string, mod, lease int64) *mvccpb.KeyValue {
		return &mvccpb.KeyValue{Key: []byte(p + key), Value: []byte(value), ModRevision: mod, Lease: lease}
	}
	c := parseCluster(p, []*mvccpb.KeyValue{
		kv("config", `{"ttl":30}`, 5, 0),
		kv("failover", `{}`, 6, 0),
		kv("history", `[]`, 7, 0),
		kv("initialize", "7268616322854375442", 2, 0),
		kv("leader", "pg1", 9, 7587860397574167297),
		kv("members/", "nameless", 3, 0),
		kv("members/pg1", `{"role":"primary"}`, 8, 7587860397574167297),
		kv("members/pg1/extra", "deeper", 4, 0),
		kv("members/pg2", `{"role":"replica"}`, 10, 77),
		kv("optime/leader", "123", 11, 0),
		kv("status", `{"optime":1}`, 12, 0),
		kv("sync", `{"leader":"pg1"}`, 13, 0),
		kv("failsafe", `{"pg1":"http://a"}`, 14, 0),
	})
	want := &dcs.Cluster{
		Initialize: &dcs.Value{Data: []byte("7268616322854375442"), Version: "2"},
		Config:     &dcs.Value{Data: []byte(`{"ttl":30}`), Version: "5"},
		Leader:     &dcs.Leader{Name: "pg1", Version: "9", Session: "7587860397574167297"},
		Members: []dcs.Member{
			{Name: "pg1", Data: []byte(`{"role":"primary"}`), Version: "8", Session: "7587860397574167297"},
			{Name: "pg2", Data: []byte(`{"role":"replica"}`), Version: "10", Session: "77"},
		},
		Failover: &dcs.Value{Data: []byte(`{}`), Version: "6"},
		Sync:     &dcs.Value{Data: []byte(`{"leader":"pg1"}`), Version: "13"},
		History:  &dcs.Value{Data: []byte(`[]`), Version: "7"},
		Status:   &dcs.Value{Data: []byte(`{"optime":1}`), Version: "12"},
		Failsafe: &dcs.Value{Data: []byte(`{"pg1":"http://a"}`), Version: "14"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", c, want)
	}
	if empty := parseCluster(p, nil); !reflect.DeepEqual(empty, &dcs.Cluster{}) {
		t.Fatalf("empty prefix parsed as %+v", empty)
	}
}

func TestParseVersion(t *testing.T) {
	for _, v := range []string{"0", "-3", "abc", "1.5"} {
		if _, err := parseVersion(v); !errors.Is(err, dcs.ErrVersionMismatch) {
			t.Errorf("parseVersion(%q): want ErrVersionMismatch, got %v", v, err)
		}
	}
	if rev, err := parseVersion("42"); err != nil || rev != 42 {
		t.Fatalf("parseVersion(42) = %d, %v", rev, err)
	}
}
