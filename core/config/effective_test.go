package config

import (
	"reflect"
	"testing"
)

func boolPtr(b bool) *bool { return &b }

// The settings Patroni passes on the command line come from the dynamic
// configuration only; other local settings win over dynamic ones.
func TestMergeParameterPrecedence(t *testing.T) {
	local := &Config{}
	local.PostgreSQL.Parameters = map[string]Param{
		"max_connections": NewParam(30),
		"Max_Wal_Senders": NewParam(4),
		"work_mem":        NewParam("4MB"),
	}
	var dyn Dynamic
	dyn.PostgreSQL.Parameters = map[string]Param{
		"max_connections": NewParam(40),
		"work_mem":        NewParam("8MB"),
		"shared_buffers":  NewParam("16MB"),
	}
	got := Merge(dyn, local).PostgreSQL.Parameters
	want := map[string]string{"max_connections": "40", "work_mem": "4MB", "shared_buffers": "16MB"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parameters %v, want %v", got, want)
	}
}

// A logical permanent slot forces hot_standby_feedback on, whatever either
// configuration says; physical slots leave it alone.
func TestMergeHotStandbyFeedback(t *testing.T) {
	local := &Config{}
	local.PostgreSQL.Parameters = map[string]Param{"hot_standby_feedback": NewParam("off")}
	dyn, ps := ParseDynamic([]byte(`{"slots": {"keep": {"type": "physical"}}}`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if got := Merge(dyn, local).PostgreSQL.Parameters["hot_standby_feedback"]; got != "off" {
		t.Errorf("physical slots only: hot_standby_feedback = %q, want the local off", got)
	}
	dyn, ps = ParseDynamic([]byte(`{"slots": {"keep": {"type": "physical"}, "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}},
		"postgresql": {"parameters": {"hot_standby_feedback": "off"}}}`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if got := Merge(dyn, local).PostgreSQL.Parameters["hot_standby_feedback"]; got != "on" {
		t.Errorf("with a logical slot: hot_standby_feedback = %q, want on", got)
	}
}

func TestMergeUsePgRewind(t *testing.T) {
	for _, tc := range []struct {
		dynamic bool
		local   *bool
		want    bool
	}{
		{false, nil, false},
		{true, nil, true},
		{true, boolPtr(false), false},
		{false, boolPtr(true), true},
	} {
		dyn := DefaultDynamic()
		dyn.PostgreSQL.UsePgRewind = tc.dynamic
		local := &Config{}
		local.PostgreSQL.UsePgRewind = tc.local
		if got := Merge(dyn, local).PostgreSQL.UsePgRewind; got != tc.want {
			t.Errorf("dynamic %v, local %v: use_pg_rewind = %v, want %v", tc.dynamic, tc.local, got, tc.want)
		}
	}
}

// Lists replace (local first), recovery settings merge, use_slots is
// dynamic only; a nil local is the defaults.
func TestMergeListsAndRecovery(t *testing.T) {
	dyn, ps := ParseDynamic([]byte(`{"postgresql": {"use_slots": false, "pg_hba": ["host all all 0.0.0.0/0 md5"], "pg_ident": ["m a b"],
		"recovery_conf": {"restore_command": "cp /a/%f %p", "recovery_min_apply_delay": 5}}}`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	local := &Config{}
	local.PostgreSQL.PgHBA = []string{"local all all trust"}
	local.PostgreSQL.RecoveryConf = Table{"restore_command": "true"}
	e := Merge(dyn, local).PostgreSQL
	if !reflect.DeepEqual(e.PgHBA, []string{"local all all trust"}) || !reflect.DeepEqual(e.PgIdent, []string{"m a b"}) {
		t.Errorf("pg_hba %v, pg_ident %v", e.PgHBA, e.PgIdent)
	}
	if want := map[string]string{"restore_command": "true", "recovery_min_apply_delay": "5"}; !reflect.DeepEqual(e.RecoveryConf, want) {
		t.Errorf("recovery_conf %v, want %v", e.RecoveryConf, want)
	}
	if e.UseSlots {
		t.Error("use_slots: the dynamic false was not kept")
	}
	if def := Merge(DefaultDynamic(), nil); def.Local == nil || !def.PostgreSQL.UseSlots || def.PostgreSQL.UsePgRewind {
		t.Errorf("defaults: %+v", def)
	}
}

func TestPermanentSlots(t *testing.T) {
	dyn, ps := ParseDynamic([]byte(`{"slots": {"b": {"type": "physical"}, "a": {"type": "logical", "database": "app", "plugin": "pgoutput", "cluster_type": "any"}}}`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	got := dyn.PermanentSlots()
	if len(got) != 2 || got[0].Name != "a" || got[0].Type != SlotLogical || got[0].Database != "app" || got[0].Plugin != "pgoutput" ||
		got[1].Name != "b" || got[1].Type != SlotPhysical {
		t.Errorf("permanent slots %+v", got)
	}
}
