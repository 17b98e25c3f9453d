package config

import (
	"strings"
	"testing"
)

// inEffect is a configuration an agent runs with after reading a good
// /config: every value differs from its default.
func inEffect(t *testing.T) Dynamic {
	t.Helper()
	dyn, ps := ParseDynamic([]byte(`{"ttl": 40, "loop_wait": 5, "retry_timeout": 15, "synchronous_mode": "on", "synchronous_mode_strict": true,
		"failsafe_mode": true, "maximum_lag_on_failover": 2048, "primary_start_timeout": 60,
		"postgresql": {"use_slots": false, "use_pg_rewind": true, "parameters": {"max_connections": 200}}}`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	return dyn
}

// TestDynamicOverTiming: /config with loop_wait 0 and retry_timeout 0 (as
// patronictl 3.0.2 or etcdctl write it) would make every DCS call fail at
// once; the timing in effect stays, and the problems name the keys.
func TestDynamicOverTiming(t *testing.T) {
	last := inEffect(t)
	for _, in := range []string{
		`{"ttl": 40, "loop_wait": 0, "retry_timeout": 0, "failsafe_mode": true}`,
		`{"ttl": 10, "loop_wait": 5, "retry_timeout": 15, "failsafe_mode": true}`,
		`{"ttl": "soon", "loop_wait": 5, "retry_timeout": 15, "failsafe_mode": true}`,
		`{"ttl": 100, "loop_wait": 5, "retry_timeout": -3, "failsafe_mode": true}`,
	} {
		dyn, ps := ParseDynamicOver([]byte(in), last)
		if dyn.TTL != 40 || dyn.LoopWait != 5 || dyn.RetryTimeout != 15 {
			t.Errorf("%s: timing %d/%d/%d, want the values in effect 40/5/15", in, dyn.TTL, dyn.LoopWait, dyn.RetryTimeout)
		}
		if !dyn.FailsafeMode || dyn.SynchronousMode != SyncOff {
			t.Errorf("%s: the other keys are the document's (absent = default): %+v", in, dyn)
		}
		if len(ps) == 0 {
			t.Fatalf("%s: no problem reported", in)
		}
		for _, p := range ps {
			if !strings.Contains(p.String(), "ttl, loop_wait and retry_timeout keep the values in effect: 40, 5, 15") {
				t.Errorf("%s: problem does not say what is kept: %s", in, p)
			}
		}
		if ps := dyn.Validate(); len(ps) > 0 {
			t.Errorf("%s: the result is invalid: %v", in, ps)
		}
	}
	// The problem names the rejected key.
	_, ps := ParseDynamicOver([]byte(`{"loop_wait": 0, "retry_timeout": 0}`), last)
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	if strings.Join(paths, ",") != "loop_wait,retry_timeout" {
		t.Errorf("rejected keys %v, want loop_wait and retry_timeout", paths)
	}
}

// TestDynamicOverPerKey: each rejected key keeps its value in effect, not
// the default; the keys that parse take the document's values.
func TestDynamicOverPerKey(t *testing.T) {
	last := inEffect(t)
	dyn, ps := ParseDynamicOver([]byte(`{"ttl": 30, "loop_wait": 10, "retry_timeout": 10,
		"synchronous_mode": "sometimes", "failsafe_mode": "maybe", "maximum_lag_on_failover": -1, "master_start_timeout": "x",
		"postgresql": {"use_slots": "perhaps", "use_pg_rewind": false, "parameters": {"work_mem": [1]}}}`), last)
	if dyn.TTL != 30 || dyn.LoopWait != 10 || dyn.RetryTimeout != 10 {
		t.Errorf("good timing not taken: %d/%d/%d", dyn.TTL, dyn.LoopWait, dyn.RetryTimeout)
	}
	if dyn.SynchronousMode != SyncOn || !dyn.FailsafeMode || dyn.MaximumLagOnFailover != 2048 || dyn.PrimaryStartTimeout != 60 {
		t.Errorf("rejected keys fell back to defaults: sync %q failsafe %v lag %d start %d", dyn.SynchronousMode, dyn.FailsafeMode, dyn.MaximumLagOnFailover, dyn.PrimaryStartTimeout)
	}
	if dyn.PostgreSQL.UseSlots || dyn.PostgreSQL.UsePgRewind || dyn.PostgreSQL.Parameters["max_connections"].Raw() != int64(200) {
		t.Errorf("postgresql keys: %+v", dyn.PostgreSQL)
	}
	want := map[string]string{
		"synchronous_mode":               `keeping the value in effect: true`,
		"failsafe_mode":                  `keeping the value in effect: true`,
		"maximum_lag_on_failover":        `keeping the value in effect: 2048`,
		"master_start_timeout":           `keeping the value in effect: 60`,
		"postgresql.use_slots":           `keeping the value in effect: false`,
		"postgresql.parameters.work_mem": `keeping the value in effect: {"max_connections":200}`,
	}
	if len(ps) != len(want) {
		t.Fatalf("problems %v", ps)
	}
	for _, p := range ps {
		if w, ok := want[p.Path]; !ok || !strings.Contains(p.Message, w) {
			t.Errorf("problem %s, want %q", p, w)
		}
	}
}

// TestDynamicOverDocument: a value that is no JSON object keeps the whole
// configuration in effect.
func TestDynamicOverDocument(t *testing.T) {
	last := inEffect(t)
	for _, in := range []string{``, `garbage`, `[1]`, `{"ttl": 30`, `{} {}`} {
		dyn, ps := ParseDynamicOver([]byte(in), last)
		if dyn.TTL != 40 || dyn.SynchronousMode != SyncOn || !dyn.FailsafeMode || dyn.PostgreSQL.UseSlots {
			t.Errorf("%q: not the configuration in effect: %+v", in, dyn)
		}
		if len(ps) != 1 || !strings.Contains(ps[0].Message, "keeping the whole configuration in effect") {
			t.Errorf("%q: problems %v", in, ps)
		}
	}
}

// TestDynamicOverValid: a valid document is read as ParseDynamic reads it,
// absent keys at their defaults (Patroni's meaning of an absent key).
func TestDynamicOverValid(t *testing.T) {
	dyn, ps := ParseDynamicOver([]byte(`{"ttl": 20, "loop_wait": 2, "retry_timeout": 5}`), inEffect(t))
	if len(ps) > 0 || dyn.TTL != 20 || dyn.SynchronousMode != SyncOff || dyn.MaximumLagOnFailover != DefaultMaximumLagOnFailover {
		t.Errorf("%+v %v", dyn, ps)
	}
}
