package dcstest

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryConformance(t *testing.T) {
	store := NewMemoryStore()
	t.Cleanup(store.Stop)
	RunConformance(t, Target{
		New: func(*testing.T) dcs.Backend { return store.NewBackend() },
	})
}
