package agent

import (
	"slices"
	"testing"

	"github.com/custos-ha/custos/core/config"
)

// TestBootstrapParams: Patroni's arguments for a custom bootstrap command.
func TestBootstrapParams(t *testing.T) {
	m := config.BootstrapMethod{Command: "restore.sh", Params: config.Table{"target": "2026-12-08", "jobs": 4}}
	got := bootstrapParams("demo", "/data/pg", m)
	want := []string{"--scope=demo", "--datadir=/data/pg", "--jobs=4", "--target=2026-12-08"}
	if !slices.Equal(got, want) {
		t.Errorf("params %q, want %q", got, want)
	}
	m.NoParams = true
	if got := bootstrapParams("demo", "/data/pg", m); !slices.Equal(got, want[2:]) {
		t.Errorf("no_params: %q, want %q", got, want[2:])
	}
}
