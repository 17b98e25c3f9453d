package callback

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/custos-ha/custos/plugin/sdk"
	callbackv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/callback/v1"
)

// Actions that make fakeReceiver do something other than record the event.
const (
	actBlock  = "test_block"  // wait for ctx to end, report what it saw
	actHang   = "test_hang"   // ignore ctx until released
	actFail   = "test_fail"   // fail
	actConfig = "test_config" // refuse the section
)

// ctxSeen is what a blocked Deliver saw of its context on the plugin side.
type ctxSeen struct {
	err         error
	deadline    time.Time
	hasDeadline bool
}

// fakeReceiver records what crossed the wire and plays scripted outcomes.
type fakeReceiver struct {
	mu      sync.Mutex
	got     []Event
	configs []string
	seen    chan ctxSeen
	release chan struct{}
}

func newFake() *fakeReceiver {
	return &fakeReceiver{seen: make(chan ctxSeen, 1), release: make(chan struct{})}
}

func (f *fakeReceiver) Validate(_ context.Context, config []byte) error {
	if string(config) != "{}" {
		errs := &sdk.ConfigError{}
		errs.Add("url", "must be an absolute URL")
		errs.Add("headers.X-A", "must be a string")
		return errs
	}
	return nil
}

func (f *fakeReceiver) Deliver(ctx context.Context, config []byte, ev Event) error {
	f.mu.Lock()
	f.got = append(f.got, ev)
	f.configs = append(f.configs, string(config))
	f.mu.Unlock()
	switch ev.Action {
	case actBlock:
		<-ctx.Done()
		d, ok := ctx.Deadline()
		f.seen <- ctxSeen{err: ctx.Err(), deadline: d, hasDeadline: ok}
		return fmt.Errorf("stopped: %w", ctx.Err())
	case actHang:
		<-f.release
		return nil
	case actFail:
		return errors.New("hook answered 503 Service Unavailable")
	case actConfig:
		errs := &sdk.ConfigError{}
		errs.Add("timeout", "must be positive")
		return errs
	}
	return nil
}

func (f *fakeReceiver) events() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Event(nil), f.got...)
}

// grpcReceiver serves impl over an in-process gRPC connection and returns
// the host-side client and the raw gRPC client of the same connection.
func grpcReceiver(t *testing.T, impl Receiver) (Receiver, callbackv1.CallbackServiceClient) {
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
	return raw.(Receiver), callbackv1.NewCallbackServiceClient(client.Conn)
}

func testEvent(seq uint64, action string) Event {
	return Event{
		Action: action,
		Role:   RolePrimary,
		Scope:  "demo",
		Member: "node-1",
		Seq:    seq,
		Time:   time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600)),
	}
}

func TestEventCrossesTheWire(t *testing.T) {
	fake := newFake()
	c, _ := grpcReceiver(t, fake)
	want := []Event{
		{Action: ActionStart, Role: RoleReplica, Scope: "demo", Member: "node-1", Seq: 1, Time: time.Unix(1, 1)},
		{Action: ActionRoleChange, Role: RoleStandbyLeader, Scope: "démo", Member: "n 2", Seq: math.MaxUint64, Time: maxWireTime},
		testEvent(3, ActionReload),
		{Action: ActionStop, Seq: 4, Time: minWireTime},
	}
	for _, ev := range want {
		if err := c.Deliver(context.Background(), []byte(`{"url":"x"}`), ev); err != nil {
			t.Fatalf("Deliver(%+v) = %v", ev, err)
		}
	}
	got := fake.events()
	if len(got) != len(want) {
		t.Fatalf("plugin got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC {
			t.Errorf("event %d: time crossed as %v, want %v in UTC", i, g.Time, w.Time)
		}
		g.Time, w.Time = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("event %d crossed as %+v, want %+v", i, g, w)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.configs[0] != `{"url":"x"}` {
		t.Errorf("config crossed as %q", fake.configs[0])
	}
}

func TestValidateCrossesTheWire(t *testing.T) {
	c, _ := grpcReceiver(t, newFake())
	ctx := context.Background()
	if err := c.Validate(ctx, []byte("{}")); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := c.Validate(ctx, []byte(`{"x":1}`))
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("want *sdk.ConfigError, got %T %v", err, err)
	}
	if len(cfgErr.Problems) != 2 || cfgErr.Problems[0].Path != "url" || cfgErr.Problems[1].Path != "headers.X-A" {
		t.Errorf("problems = %+v", cfgErr.Problems)
	}
	if errors.Is(err, ErrInvalidEvent) {
		t.Errorf("a config error matches ErrInvalidEvent")
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	c, _ := grpcReceiver(t, newFake())
	ctx := context.Background()

	err := c.Deliver(ctx, nil, testEvent(1, actFail))
	if err == nil || !strings.Contains(err.Error(), "hook answered 503 Service Unavailable") {
		t.Errorf("failure: got %v", err)
	}
	var cfgErr *sdk.ConfigError
	if errors.Is(err, ErrInvalidEvent) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &cfgErr) {
		t.Errorf("a plain failure matches a contract error: %v", err)
	}

	err = c.Deliver(ctx, nil, testEvent(2, actConfig))
	if !errors.As(err, &cfgErr) || len(cfgErr.Problems) != 1 || cfgErr.Problems[0].Path != "timeout" {
		t.Errorf("config: got %T %v", err, err)
	}
}

func TestInvalidEventIsRefused(t *testing.T) {
	fake := newFake()
	c, raw := grpcReceiver(t, fake)
	ctx := context.Background()
	good := testEvent(1, ActionStart)
	bad := map[string]Event{}
	ev := good
	ev.Seq = 0
	bad["seq 0"] = ev
	ev = good
	ev.Action = ""
	bad["no action"] = ev
	ev = good
	ev.Time = time.Time{}
	bad["no time"] = ev
	ev = good
	ev.Time = maxWireTime.Add(time.Nanosecond)
	bad["time past 2262"] = ev
	ev = good
	ev.Time = time.Unix(0, 0)
	bad["unix epoch"] = ev
	for name, ev := range bad {
		if err := c.Deliver(ctx, nil, ev); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: host side got %v, want ErrInvalidEvent", name, err)
		}
	}
	// The plugin side checks too: a request sent without the SDK's client.
	for name, pev := range map[string]*callbackv1.Event{
		"no event": nil,
		"seq 0":    {Action: ActionStart, TimeUnixNano: 1},
		"no time":  {Action: ActionStart, Seq: 1},
	} {
		_, err := raw.Deliver(ctx, &callbackv1.DeliverRequest{Event: pev})
		if status.Code(err) != codes.InvalidArgument || !errors.Is(fromStatus(err), ErrInvalidEvent) {
			t.Errorf("%s: plugin side answered %v, want ErrInvalidEvent", name, err)
		}
	}
	if got := fake.events(); len(got) != 0 {
		t.Errorf("the receiver saw invalid events: %+v", got)
	}
}

// TestDeadlineCrossesTheWire: the plugin's context carries the host's
// deadline and ends with it, and the host's call reports it. (The plugin's
// ctx.Err() may be Canceled rather than DeadlineExceeded: the host cuts
// the call at its deadline, usually before the plugin's own timer fires.)
func TestDeadlineCrossesTheWire(t *testing.T) {
	fake := newFake()
	c, _ := grpcReceiver(t, fake)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	hostDeadline, _ := ctx.Deadline()
	err := c.Deliver(ctx, nil, testEvent(1, actBlock))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver past its deadline = %v, want context.DeadlineExceeded", err)
	}
	select {
	case seen := <-fake.seen:
		if seen.err == nil || !seen.hasDeadline {
			t.Errorf("plugin side ctx: err %v, deadline %v; want it ended, with a deadline", seen.err, seen.hasDeadline)
		}
		// gRPC sends the time left, so the plugin's deadline is the host's
		// plus the time the request took to arrive.
		if skew := seen.deadline.Sub(hostDeadline); skew < -time.Millisecond || skew > 100*time.Millisecond {
			t.Errorf("plugin side deadline %v, host's %v", seen.deadline, hostDeadline)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin's ctx did not end with the host's deadline")
	}
}

// TestCancelCrossesTheWire: cancelling the host's call ends the plugin's
// context.
func TestCancelCrossesTheWire(t *testing.T) {
	fake := newFake()
	c, _ := grpcReceiver(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- c.Deliver(ctx, nil, testEvent(1, actBlock)) }()
	waitDelivered(t, fake, 1)
	cancel()
	select {
	case err := <-result:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Deliver = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Deliver did not return")
	}
	select {
	case seen := <-fake.seen:
		if !errors.Is(seen.err, context.Canceled) || seen.hasDeadline {
			t.Errorf("plugin side ctx: err %v, deadline %v; want Canceled without a deadline", seen.err, seen.hasDeadline)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin's ctx did not end with the host's cancellation")
	}
}

// TestHungPluginDoesNotHoldTheHost: a plugin that ignores its context
// does not keep the host's call past its deadline.
func TestHungPluginDoesNotHoldTheHost(t *testing.T) {
	fake := newFake()
	c, _ := grpcReceiver(t, fake)
	defer close(fake.release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Deliver(ctx, nil, testEvent(1, actHang))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver to a hung plugin = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Deliver to a hung plugin took %v", took)
	}
}

func TestCancelledBeforeTheCall(t *testing.T) {
	fake := newFake()
	c, _ := grpcReceiver(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Deliver(ctx, nil, testEvent(1, ActionStart)); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver with a cancelled ctx = %v, want context.Canceled", err)
	}
	if err := c.Validate(ctx, []byte("{}")); !errors.Is(err, context.Canceled) {
		t.Errorf("Validate with a cancelled ctx = %v, want context.Canceled", err)
	}
	if got := fake.events(); len(got) != 0 {
		t.Errorf("the receiver got %+v from a cancelled call", got)
	}
}

// waitDelivered polls until the fake has seen n events.
func waitDelivered(t *testing.T, fake *fakeReceiver, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(fake.events()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver saw %d events, want %d", len(fake.events()), n)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}
