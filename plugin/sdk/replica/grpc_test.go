package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
)

// fakeCreator records what crossed the wire and plays scripted outcomes.
type fakeCreator struct {
	mu       sync.Mutex
	got      Request
	cleaned  atomic.Bool
	blockFor time.Duration // how long cleanup takes after a cancel
}

func (f *fakeCreator) Validate(_ context.Context, method string, config []byte) error {
	if method != "fake" {
		return fmt.Errorf("method %q: %w", method, ErrUnknownMethod)
	}
	if string(config) != "{}" {
		errs := &sdk.ConfigError{}
		errs.Add("max-rate", "not a rate")
		errs.Add("[1]", "unknown option")
		return errs
	}
	return nil
}

func (f *fakeCreator) CreateReplica(ctx context.Context, req Request, progress func(Progress)) error {
	f.mu.Lock()
	f.got = req
	f.mu.Unlock()
	switch req.Method {
	case "ok":
		progress(Progress{Message: "starting", Percent: PercentUnknown})
		progress(Progress{Message: "half", Percent: 50, DoneBytes: 512, TotalBytes: 1024})
		progress(Progress{Message: "done", Percent: 100, DoneBytes: 1024, TotalBytes: 1024})
		return nil
	case "not-empty":
		return fmt.Errorf("claiming /x: %w", ErrDataDirNotEmpty)
	case "no-source":
		return ErrNoSource
	case "bad-request":
		return fmt.Errorf("password in dsn: %w", ErrInvalidRequest)
	case "config":
		errs := &sdk.ConfigError{}
		errs.Add("checkpoint", "must be fast or spread")
		return errs
	case "fail":
		return errors.New("pg_basebackup exited with status 1")
	case "block":
		progress(Progress{Message: "copying", Percent: 1})
		<-ctx.Done()
		time.Sleep(f.blockFor)
		f.cleaned.Store(true)
		return fmt.Errorf("copy stopped: %w", ctx.Err())
	}
	return fmt.Errorf("method %q: %w", req.Method, ErrUnknownMethod)
}

// grpcCreator serves impl over an in-process gRPC connection and returns
// the host-side client.
func grpcCreator(t *testing.T, impl Creator) Creator {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		PluginName: &Plugin{Impl: impl},
	})
	// Closing the client shuts the server down through go-plugin's
	// controller; stopping it here as well would race with that.
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(Creator)
}

func TestRequestAndProgressCrossTheWire(t *testing.T) {
	fake := &fakeCreator{}
	c := grpcCreator(t, fake)
	req := Request{
		Method: "ok", Scope: "demo", Member: "node2", DataDir: "/var/lib/pg/data",
		Source: &Source{Member: "node1", ConnString: "host=h port=5432", Host: "h", Port: 5432, DBName: "postgres", User: "replicator", PassFile: "/tmp/pgpass"},
		Role:   RoleReplica, Config: []byte(`["verbose"]`), BinDir: "/usr/lib/postgresql/15/bin", Env: map[string]string{"A": "b"},
		KeepData: true,
	}
	var got []Progress
	if err := c.CreateReplica(context.Background(), req, func(p Progress) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	want := []Progress{
		{Message: "starting", Percent: PercentUnknown},
		{Message: "half", Percent: 50, DoneBytes: 512, TotalBytes: 1024},
		{Message: "done", Percent: 100, DoneBytes: 1024, TotalBytes: 1024},
	}
	if !slices.Equal(got, want) {
		t.Errorf("progress = %+v, want %+v", got, want)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.got.Source == nil || *fake.got.Source != *req.Source || fake.got.DataDir != req.DataDir ||
		fake.got.Env["A"] != "b" || string(fake.got.Config) != `["verbose"]` || fake.got.Role != RoleReplica ||
		fake.got.BinDir != req.BinDir || fake.got.Scope != "demo" || fake.got.Member != "node2" || !fake.got.KeepData {
		t.Errorf("request crossed as %+v", fake.got)
	}
}

func TestNilSourceCrossesTheWire(t *testing.T) {
	fake := &fakeCreator{}
	c := grpcCreator(t, fake)
	if err := c.CreateReplica(context.Background(), Request{Method: "ok"}, nil); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.got.Source != nil {
		t.Errorf("nil source crossed as %+v", fake.got.Source)
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	c := grpcCreator(t, &fakeCreator{})
	ctx := context.Background()
	for method, want := range map[string]error{
		"not-empty":   ErrDataDirNotEmpty,
		"no-source":   ErrNoSource,
		"bad-request": ErrInvalidRequest,
		"nope":        ErrUnknownMethod,
	} {
		err := c.CreateReplica(ctx, Request{Method: method}, nil)
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", method, err, want)
		}
		var cfgErr *sdk.ConfigError
		if errors.As(err, &cfgErr) {
			t.Errorf("%s: came back as a config error: %v", method, err)
		}
	}
	err := c.CreateReplica(ctx, Request{Method: "fail"}, nil)
	if err == nil || err.Error() != "pg_basebackup exited with status 1" {
		t.Errorf("fail: got %v", err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s.Err) {
			t.Errorf("a plain failure matches %v", s.Err)
		}
	}
	err = c.CreateReplica(ctx, Request{Method: "config"}, nil)
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) || len(cfgErr.Problems) != 1 || cfgErr.Problems[0].Path != "checkpoint" {
		t.Errorf("config: got %T %v", err, err)
	}
}

func TestValidateCrossesTheWire(t *testing.T) {
	c := grpcCreator(t, &fakeCreator{})
	ctx := context.Background()
	if err := c.Validate(ctx, "fake", []byte("{}")); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := c.Validate(ctx, "fake", []byte(`{"x":1}`))
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("want *sdk.ConfigError, got %T %v", err, err)
	}
	if len(cfgErr.Problems) != 2 || cfgErr.Problems[0].Path != "max-rate" || cfgErr.Problems[1].Path != "[1]" {
		t.Errorf("problems = %+v", cfgErr.Problems)
	}
	if err := c.Validate(ctx, "other", nil); !errors.Is(err, ErrUnknownMethod) {
		t.Errorf("unknown method: %v", err)
	}
}

// TestCancelWaitsForCleanup: a cancelled call returns only after the
// plugin finished cleaning up, so the host may reuse the directory.
func TestCancelWaitsForCleanup(t *testing.T) {
	fake := &fakeCreator{blockFor: 300 * time.Millisecond}
	c := grpcCreator(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	var once sync.Once
	result := make(chan error, 1)
	go func() {
		result <- c.CreateReplica(ctx, Request{Method: "block"}, func(Progress) { once.Do(func() { close(started) }) })
	}()
	<-started
	cancel()
	select {
	case err := <-result:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled call = %v, want context.Canceled", err)
		}
		if !fake.cleaned.Load() {
			t.Errorf("the call returned before the plugin finished its cleanup")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled call did not return")
	}
}

func TestDeadlineIsReported(t *testing.T) {
	c := grpcCreator(t, &fakeCreator{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.CreateReplica(ctx, Request{Method: "block"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call past its deadline = %v, want context.DeadlineExceeded", err)
	}
}
