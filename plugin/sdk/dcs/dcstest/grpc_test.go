package dcstest

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// grpcBackend serves impl over an in-process gRPC connection and returns
// the host-side client, so the kit exercises the wire form of the contract.
func grpcBackend(t *testing.T, impl dcs.Backend) dcs.Backend {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		dcs.PluginName: &dcs.Plugin{Impl: impl},
	})
	// Closing the client also stops the test server.
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(dcs.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(dcs.Backend)
}

func TestMemoryConformanceOverGRPC(t *testing.T) {
	store := NewMemoryStore()
	t.Cleanup(store.Stop)
	RunConformance(t, Target{
		New: func(t *testing.T) dcs.Backend { return grpcBackend(t, store.NewBackend()) },
	})
}

func TestConfigErrorCrossesTheWire(t *testing.T) {
	store := NewMemoryStore()
	t.Cleanup(store.Stop)
	b := grpcBackend(t, store.NewBackend())
	err := b.Configure(context.Background(), dcs.ConfigureRequest{Config: []byte(`{}`)})
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("want *sdk.ConfigError, got %T %v", err, err)
	}
	paths := map[string]bool{}
	for _, p := range cfgErr.Problems {
		paths[p.Path] = true
	}
	for _, want := range []string{"scope", "name", "ttl"} {
		if !paths[want] {
			t.Errorf("problem for %q missing in %v", want, cfgErr)
		}
	}
}

func TestSentinelsCrossTheWire(t *testing.T) {
	store := NewMemoryStore()
	t.Cleanup(store.Stop)
	ctx := context.Background()
	a := grpcBackend(t, store.NewBackend())
	req := dcs.ConfigureRequest{Scope: "s", Member: "a", TTL: defaultTTL}
	if err := a.Configure(ctx, req); err != nil {
		t.Fatal(err)
	}
	v, err := a.CompareAndSet(ctx, dcs.KeyConfig, []byte("x"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CompareAndSet(ctx, dcs.KeyConfig, []byte("x"), ""); !errors.Is(err, dcs.ErrExists) {
		t.Errorf("want ErrExists, got %v", err)
	}
	if _, err := a.CompareAndSet(ctx, dcs.KeyConfig, []byte("x"), v+"0"); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Errorf("want ErrVersionMismatch, got %v", err)
	}
	if err := a.CompareAndDelete(ctx, dcs.KeySync, "7"); !errors.Is(err, dcs.ErrNotFound) {
		t.Errorf("want ErrNotFound, got %v", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetCluster(ctx); !errors.Is(err, dcs.ErrUnavailable) {
		t.Errorf("after Close want ErrUnavailable, got %v", err)
	}
}
