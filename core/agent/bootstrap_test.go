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

// TestBootstrapTarget: recovery_conf's recovery target settings become a
// bootstrap plugin's target; anything else is refused, named.
func TestBootstrapTarget(t *testing.T) {
	tg, err := bootstrapTarget(config.Table{
		"recovery_target_time": "2026-12-08 10:00:00+00", "recovery_target_inclusive": false,
		"recovery_target_action": "promote",
	})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Time.UTC().Hour() != 10 || !tg.Exclusive || tg.Action != "promote" {
		t.Errorf("target %+v", tg)
	}
	if tg, err := bootstrapTarget(nil); err != nil || tg != nil {
		t.Errorf("no settings: %+v %v, want none", tg, err)
	}
	for _, bad := range []config.Table{
		{"restore_command": "cp %f %p"},
		{"recovery_target_time": "yesterday"},
		{"recovery_target_xid": "abc"},
		{"recovery_target": "latest"},
	} {
		if _, err := bootstrapTarget(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
