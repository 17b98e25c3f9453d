package agent

import (
	"testing"

	"github.com/custos-ha/custos/core/config"
)

// The settings Patroni passes on the command line come from the dynamic
// configuration only; other local settings win over dynamic ones.
func TestPgConfigParameterPrecedence(t *testing.T) {
	cfg := &config.Config{}
	cfg.PostgreSQL.Parameters = map[string]config.Param{
		"max_connections": config.NewParam(30),
		"Max_Wal_Senders": config.NewParam(4),
		"work_mem":        config.NewParam("4MB"),
	}
	var dyn config.Dynamic
	dyn.PostgreSQL.Parameters = map[string]config.Param{
		"max_connections": config.NewParam(40),
		"work_mem":        config.NewParam("8MB"),
		"shared_buffers":  config.NewParam("16MB"),
	}
	got := pgConfig(cfg, dyn).Parameters
	want := map[string]string{"max_connections": "40", "work_mem": "4MB", "shared_buffers": "16MB"}
	if len(got) != len(want) {
		t.Errorf("parameters %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}
