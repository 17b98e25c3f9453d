package callbacktest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk/callback"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func memorySetup(r callback.Receiver, m *Memory) Setup {
	return Setup{
		Receiver:    r,
		Config:      []byte(`{}`),
		BlockConfig: []byte(`{"block": true}`),
		FailConfig:  []byte(`{"fail": "hook answered 500"}`),
		Observed:    func(*testing.T) []callback.Event { return m.Events() },
	}
}

func TestMemoryConformance(t *testing.T) {
	RunConformance(t, func(*testing.T) Setup {
		m := NewMemory()
		return memorySetup(m, m)
	})
}

// grpcReceiver serves impl over an in-process gRPC connection and returns
// the host-side client, so the kit exercises the wire form of the
// contract.
func grpcReceiver(t *testing.T, impl callback.Receiver) callback.Receiver {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		callback.PluginName: &callback.Plugin{Impl: impl},
	})
	// Closing the client also stops the test server.
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(callback.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(callback.Receiver)
}

func TestMemoryConformanceOverGRPC(t *testing.T) {
	RunConformance(t, func(t *testing.T) Setup {
		m := NewMemory()
		return memorySetup(grpcReceiver(t, m), m)
	})
}

func TestMemoryFailWith(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	evs := Events(1, 3)
	if err := m.Deliver(ctx, nil, evs[0]); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	m.FailWith(boom)
	if err := m.Deliver(ctx, nil, evs[1]); !errors.Is(err, boom) {
		t.Errorf("Deliver while failing = %v, want boom", err)
	}
	if err := m.Deliver(ctx, nil, evs[0]); err != nil {
		t.Errorf("redelivery of a handled event while failing = %v, want nil", err)
	}
	m.FailWith(nil)
	if err := m.Deliver(ctx, nil, evs[1]); err != nil {
		t.Fatal(err)
	}
	if got := m.Events(); len(got) != 2 || got[1].Seq != 2 {
		t.Errorf("events = %+v", got)
	}
	if got := m.Calls(); len(got) != 4 {
		t.Errorf("calls = %+v, want 4", got)
	}
}

func TestMemoryHold(t *testing.T) {
	m := NewMemory()
	evs := Events(1, 2)
	release := m.Hold()
	result := make(chan error, 1)
	go func() { result <- m.Deliver(context.Background(), nil, evs[0]) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(m.Calls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Deliver did not begin")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	if len(m.Events()) != 0 {
		t.Fatal("a held event was handled before its release")
	}
	release()
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	release() // a second call is harmless

	release = m.Hold()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.Deliver(ctx, nil, evs[1]); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("held Deliver past its deadline = %v", err)
	}
	if got := m.Events(); len(got) != 1 {
		t.Errorf("events = %+v, want the released one", got)
	}
}
