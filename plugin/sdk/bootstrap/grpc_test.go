package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/custos-ha/custos/plugin/sdk"
	bootstrapv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/bootstrap/v1"
)

// fakeCreator records what crossed the wire and plays scripted outcomes,
// chosen by the request's method.
type fakeCreator struct {
	mu       sync.Mutex
	got      []Request
	cleaned  atomic.Bool
	blockFor time.Duration // how long cleanup takes after a cancel
}

func (f *fakeCreator) Validate(_ context.Context, method string, config []byte) error {
	if method != "fake" {
		return fmt.Errorf("method %q: %w", method, ErrUnknownMethod)
	}
	if string(config) != "{}" {
		errs := &sdk.ConfigError{}
		errs.Add("stanza", "must be a string")
		errs.Add("repo.path", "unknown key")
		return errs
	}
	return nil
}

func (f *fakeCreator) requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func (f *fakeCreator) CreateCluster(ctx context.Context, req Request, progress func(Progress)) (Result, error) {
	f.mu.Lock()
	f.got = append(f.got, req)
	f.mu.Unlock()
	switch req.Method {
	case "ok":
		progress(Progress{Message: "starting", Percent: PercentUnknown})
		progress(Progress{Message: "half", Percent: 50, DoneBytes: 512, TotalBytes: 1024})
		progress(Progress{Message: "done", Percent: 100, DoneBytes: 1024, TotalBytes: 1024})
		return Result{RestoreCommand: "cp /archive/%f %p"}, nil
	case "bare":
		return Result{}, nil
	case "bad-result":
		return Result{RestoreCommand: "cp /archive/x /tmp"}, nil
	case "not-empty":
		return Result{}, fmt.Errorf("claiming /x: %w", ErrDataDirNotEmpty)
	case "bad-request":
		return Result{}, fmt.Errorf("method bad-request takes no recovery target: %w", ErrInvalidRequest)
	case "config":
		errs := &sdk.ConfigError{}
		errs.Add("stanza", "missing required value")
		return Result{}, errs
	case "fail":
		return Result{}, errors.New("pgbackrest exited with status 75")
	case "block":
		progress(Progress{Message: "restoring", Percent: 1})
		<-ctx.Done()
		time.Sleep(f.blockFor)
		f.cleaned.Store(true)
		return Result{}, fmt.Errorf("restore stopped: %w", ctx.Err())
	}
	return Result{}, fmt.Errorf("method %q: %w", req.Method, ErrUnknownMethod)
}

// grpcCreator serves impl over an in-process gRPC connection and returns
// the host-side client.
func grpcCreator(t *testing.T, p plugin.Plugin) Creator {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: p})
	// Closing the client shuts the server down through go-plugin's
	// controller; stopping it here as well would race with that.
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(Creator)
}

func request(method string) Request {
	return Request{Method: method, DataDir: "/var/lib/postgresql/15/main"}
}

func TestRequestProgressAndResultCrossTheWire(t *testing.T) {
	fake := &fakeCreator{}
	c := grpcCreator(t, &Plugin{Impl: fake})
	at := time.Date(2026, 12, 8, 1, 2, 3, 456789123, time.FixedZone("", -5*3600))
	req := Request{
		Method: "ok", Scope: "demo", Member: "node1", DataDir: "/var/lib/pg/data",
		Config: []byte(`{"stanza":"main"}`), BinDir: "/usr/lib/postgresql/15/bin", Env: map[string]string{"PGBACKREST_LOG_LEVEL_CONSOLE": "info"},
		Target: &Target{Time: at, Exclusive: true, Action: ActionPause, Timeline: "4"},
	}
	var got []Progress
	res, err := c.CreateCluster(context.Background(), req, func(p Progress) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	if res.RestoreCommand != "cp /archive/%f %p" {
		t.Errorf("result = %+v", res)
	}
	want := []Progress{
		{Message: "starting", Percent: PercentUnknown},
		{Message: "half", Percent: 50, DoneBytes: 512, TotalBytes: 1024},
		{Message: "done", Percent: 100, DoneBytes: 1024, TotalBytes: 1024},
	}
	if !slices.Equal(got, want) {
		t.Errorf("progress = %+v, want %+v", got, want)
	}
	reqs := fake.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests reached the plugin", len(reqs))
	}
	r := reqs[0]
	if r.Method != req.Method || r.Scope != req.Scope || r.Member != req.Member || r.DataDir != req.DataDir ||
		string(r.Config) != string(req.Config) || r.BinDir != req.BinDir || !maps.Equal(r.Env, req.Env) {
		t.Errorf("request crossed as %+v", r)
	}
	if r.Target == nil || !r.Target.Time.Equal(at) || r.Target.Time.Format(time.RFC3339Nano) != at.Format(time.RFC3339Nano) ||
		!r.Target.Exclusive || r.Target.Action != ActionPause || r.Target.Timeline != "4" {
		t.Errorf("target crossed as %+v", r.Target)
	}
}

func TestEveryTargetKindCrossesTheWire(t *testing.T) {
	fake := &fakeCreator{}
	c := grpcCreator(t, &Plugin{Impl: fake})
	targets := []*Target{
		nil,
		{Immediate: true},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{LSN: "16/B374D848", Exclusive: true},
		{XID: 1<<32 | 771},
		{Name: "before-migration", Action: ActionShutdown, Timeline: TimelineCurrent},
	}
	for _, target := range targets {
		req := request("bare")
		req.Target = target
		if _, err := c.CreateCluster(context.Background(), req, nil); err != nil {
			t.Fatalf("target %+v: %v", target, err)
		}
	}
	reqs := fake.requests()
	for i, target := range targets {
		got := reqs[i].Target
		switch {
		case target == nil && got != nil:
			t.Errorf("nil target crossed as %+v", got)
		case target == nil:
		case got == nil || !got.Time.Equal(target.Time):
			t.Errorf("target %+v crossed as %+v", target, got)
		default:
			a, b := *target, *got
			a.Time, b.Time = time.Time{}, time.Time{}
			if a != b {
				t.Errorf("target %+v crossed as %+v", target, got)
			}
		}
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	c := grpcCreator(t, &Plugin{Impl: &fakeCreator{}})
	ctx := context.Background()
	for method, want := range map[string]error{
		"not-empty":   ErrDataDirNotEmpty,
		"bad-request": ErrInvalidRequest,
		"nope":        ErrUnknownMethod,
		"bad-result":  ErrInvalidResult,
	} {
		_, err := c.CreateCluster(ctx, request(method), nil)
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", method, err, want)
		}
		var cfgErr *sdk.ConfigError
		if errors.As(err, &cfgErr) {
			t.Errorf("%s: came back as a config error: %v", method, err)
		}
	}
	_, err := c.CreateCluster(ctx, request("fail"), nil)
	if err == nil || err.Error() != "pgbackrest exited with status 75" {
		t.Errorf("fail: got %v", err)
	}
	for _, s := range append(sentinels, sdk.Sentinel{Err: ErrInvalidResult}) {
		if errors.Is(err, s.Err) {
			t.Errorf("a plain failure matches %v", s.Err)
		}
	}
	_, err = c.CreateCluster(ctx, request("config"), nil)
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) || len(cfgErr.Problems) != 1 || cfgErr.Problems[0].Path != "stanza" {
		t.Errorf("config: got %T %v", err, err)
	}
}

func TestValidateCrossesTheWire(t *testing.T) {
	c := grpcCreator(t, &Plugin{Impl: &fakeCreator{}})
	ctx := context.Background()
	if err := c.Validate(ctx, "fake", []byte("{}")); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := c.Validate(ctx, "fake", []byte(`{"x":1}`))
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("want *sdk.ConfigError, got %T %v", err, err)
	}
	if len(cfgErr.Problems) != 2 || cfgErr.Problems[0].Path != "stanza" || cfgErr.Problems[1].Path != "repo.path" {
		t.Errorf("problems = %+v", cfgErr.Problems)
	}
	if err := c.Validate(ctx, "other", nil); !errors.Is(err, ErrUnknownMethod) {
		t.Errorf("unknown method: %v", err)
	}
}

// TestInvalidRequestIsNotSent: the client refuses a request that breaks
// Request.Check, and one with an ended ctx, without calling the plugin.
func TestInvalidRequestIsNotSent(t *testing.T) {
	fake := &fakeCreator{}
	c := grpcCreator(t, &Plugin{Impl: fake})
	bad := request("ok")
	bad.DataDir = "relative"
	if _, err := c.CreateCluster(context.Background(), bad, nil); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("relative data dir: %v, want ErrInvalidRequest", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.CreateCluster(ctx, request("ok"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("ended ctx: %v, want context.Canceled", err)
	}
	if reqs := fake.requests(); len(reqs) != 0 {
		t.Errorf("the plugin was called: %+v", reqs)
	}
}

// TestServerRefusesInvalidRequest: a request sent past the Client (another
// host implementation) is refused by the plugin's SDK before the plugin
// sees it.
func TestServerRefusesInvalidRequest(t *testing.T) {
	fake := &fakeCreator{}
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &Plugin{Impl: fake}})
	t.Cleanup(func() { _ = client.Close() })
	raw := bootstrapv1.NewBootstrapServiceClient(client.Conn)
	for name, preq := range map[string]*bootstrapv1.CreateClusterRequest{
		"relative data dir": {Method: "ok", DataDir: "data"},
		"bad time": {Method: "ok", DataDir: "/d", Target: &bootstrapv1.RecoveryTarget{
			Target: &bootstrapv1.RecoveryTarget_Time{Time: "yesterday"}}},
		"no kind":         {Method: "ok", DataDir: "/d", Target: &bootstrapv1.RecoveryTarget{}},
		"immediate false": {Method: "ok", DataDir: "/d", Target: &bootstrapv1.RecoveryTarget{Target: &bootstrapv1.RecoveryTarget_Immediate{}}},
	} {
		stream, err := raw.CreateCluster(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&bootstrapv1.CreateClusterInput{Input: &bootstrapv1.CreateClusterInput_Request{Request: preq}}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		if err := fromStatus(err); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
		}
	}
	if reqs := fake.requests(); len(reqs) != 0 {
		t.Errorf("the plugin was called: %+v", reqs)
	}
}

// TestCancelWaitsForCleanup: a cancelled call returns only after the
// plugin finished cleaning up, so the host may reuse the directory.
func TestCancelWaitsForCleanup(t *testing.T) {
	fake := &fakeCreator{blockFor: 300 * time.Millisecond}
	c := grpcCreator(t, &Plugin{Impl: fake})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	var once sync.Once
	result := make(chan error, 1)
	go func() {
		_, err := c.CreateCluster(ctx, request("block"), func(Progress) { once.Do(func() { close(started) }) })
		result <- err
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
	c := grpcCreator(t, &Plugin{Impl: &fakeCreator{}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.CreateCluster(ctx, request("block"), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call past its deadline = %v, want context.DeadlineExceeded", err)
	}
}

// scriptedPlugin serves a raw BootstrapService that sends the given
// outputs and ends OK, to play a plugin that breaks the protocol.
type scriptedPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	outputs []*bootstrapv1.CreateClusterOutput
}

func (p *scriptedPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	bootstrapv1.RegisterBootstrapServiceServer(s, &scriptedServer{outputs: p.outputs})
	return nil
}

func (p *scriptedPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewClient(bootstrapv1.NewBootstrapServiceClient(c)), nil
}

type scriptedServer struct {
	bootstrapv1.UnimplementedBootstrapServiceServer
	outputs []*bootstrapv1.CreateClusterOutput
}

func (s *scriptedServer) CreateCluster(stream bootstrapv1.BootstrapService_CreateClusterServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	for _, o := range s.outputs {
		if err := stream.Send(o); err != nil {
			return err
		}
	}
	return nil
}

// TestBrokenRepliesAreNotTrusted: a plugin that ends OK without a result,
// sends more after it, or sends an empty message, gets ErrInvalidResult.
func TestBrokenRepliesAreNotTrusted(t *testing.T) {
	progress := progressToProto(Progress{Message: "x", Percent: 5})
	result := resultToProto(Result{})
	for name, outputs := range map[string][]*bootstrapv1.CreateClusterOutput{
		"no result":             {progress},
		"nothing":               nil,
		"progress after result": {progress, result, progress},
		"two results":           {result, result},
		"empty message":         {{}, result},
	} {
		c := grpcCreator(t, &scriptedPlugin{outputs: outputs})
		var seen []Progress
		_, err := c.CreateCluster(context.Background(), request("any"), func(p Progress) { seen = append(seen, p) })
		if !errors.Is(err, ErrInvalidResult) {
			t.Errorf("%s: %v, want ErrInvalidResult", name, err)
		}
		if len(seen) > 1 {
			t.Errorf("%s: progress after the result reached the caller: %+v", name, seen)
		}
	}
	// Out-of-range percentages are read as unknown.
	pct := int32(250)
	c := grpcCreator(t, &scriptedPlugin{outputs: []*bootstrapv1.CreateClusterOutput{
		{Output: &bootstrapv1.CreateClusterOutput_Progress{Progress: &bootstrapv1.Progress{Message: "odd", Percent: &pct}}}, result}})
	var seen []Progress
	if _, err := c.CreateCluster(context.Background(), request("any"), func(p Progress) { seen = append(seen, p) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].Percent != PercentUnknown {
		t.Errorf("progress with 250%% read as %+v", seen)
	}
}
