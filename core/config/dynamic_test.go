package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Dynamic configurations as written by Patroni 4.x (compact) and by
// patronictl 3.0.2 edit-config (spaced), with keys custos does not know.
const (
	patroniCompact   = `{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"max_connections":100,"wal_level":"replica","hot_standby":"on","wal_log_hints":true},"pg_hba":["host replication replicator 127.0.0.1/32 md5"],"future_pg_key":{"x":1}},"synchronous_mode":"quorum","failsafe_mode":true,"member_slots_ttl":"30min","slots":{"cdc":{"type":"logical","database":"app","plugin":"pgoutput"}},"ignore_slots":[{"name":"ext","type":"physical"}],"standby_cluster":{"host":"10.0.0.5","port":5433,"restore_command":"cp /a/%f %p","leader_tag":"x"},"citus_unknown":[1,"two",{"three":3}]}`
	patronictlSpaced = `{"loop_wait": 10, "master_start_timeout": 120, "maximum_lag_on_failover": 1048576, "pause": true, "postgresql": {"parameters": {"max_connections": 100, "shared_buffers": "256MB"}, "use_pg_rewind": true}, "retry_timeout": 10, "synchronous_mode": true, "ttl": 30, "unknown_flag": null}`
)

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("bad JSON %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestDynamicRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// want is the expected output when it is not the input itself
		// (custos writes synchronous_mode and durations in Patroni's
		// canonical form).
		want string
	}{
		{"patroni compact", patroniCompact, strings.Replace(patroniCompact, `"member_slots_ttl":"30min"`, `"member_slots_ttl":1800`, 1)},
		{"patronictl 3.0.2 spaced", patronictlSpaced, ""},
		{"empty", `{}`, ""},
		{"sync on as string", `{"synchronous_mode":"on"}`, `{"synchronous_mode":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dyn, ps := ParseDynamic([]byte(tc.in))
			if len(ps) > 0 {
				t.Fatalf("problems:\n%v", ps)
			}
			out, err := json.Marshal(dyn)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if !jsonEqual(t, out, []byte(want)) {
				t.Errorf("round trip:\n got %s\nwant %s", out, want)
			}
		})
	}
}

func TestDynamicTypedValues(t *testing.T) {
	dyn, ps := ParseDynamic([]byte(patroniCompact))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if dyn.SynchronousMode != SyncQuorum || !dyn.FailsafeMode || dyn.MemberSlotsTTL != 1800 {
		t.Errorf("sync %q failsafe %v member_slots_ttl %d", dyn.SynchronousMode, dyn.FailsafeMode, dyn.MemberSlotsTTL)
	}
	if dyn.PostgreSQL.Parameters["max_connections"].Raw() != int64(100) {
		t.Errorf("max_connections = %#v", dyn.PostgreSQL.Parameters["max_connections"].Raw())
	}
	if dyn.StandbyCluster == nil || dyn.StandbyCluster.Host != "10.0.0.5" || dyn.StandbyCluster.Port != 5433 {
		t.Errorf("standby_cluster = %+v", dyn.StandbyCluster)
	}
	if dyn.PrimaryStartTimeout != DefaultPrimaryStartTimeout || dyn.LoopWait.Duration().Seconds() != 10 {
		t.Errorf("defaults not kept: %+v", dyn)
	}

	spaced, ps := ParseDynamic([]byte(patronictlSpaced))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if spaced.PrimaryStartTimeout != 120 || !spaced.Pause || spaced.SynchronousMode != SyncOn {
		t.Errorf("alias/pause/sync not read: %+v", spaced)
	}
	// A changed value is written under the key the document used.
	spaced.PrimaryStartTimeout = 60
	spaced.TTL = 45
	spaced.CheckTimeline = true
	out, _ := json.Marshal(spaced)
	var m map[string]any
	_ = json.Unmarshal(out, &m)
	if m["master_start_timeout"] != float64(60) || m["primary_start_timeout"] != nil || m["ttl"] != float64(45) || m["check_timeline"] != true {
		t.Errorf("changes not written as expected: %s", out)
	}
}

func TestDefaultDynamic(t *testing.T) {
	out, err := json.Marshal(DefaultDynamic())
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{}` {
		t.Errorf("defaults marshal to %s, want {} (Patroni leaves defaults out)", out)
	}
	if ps := DefaultDynamic().Validate(); len(ps) > 0 {
		t.Errorf("defaults are invalid: %v", ps)
	}
	d := DefaultDynamic()
	if d.LoopWait+2*d.RetryTimeout > d.TTL {
		t.Errorf("default timings break the ttl rule")
	}
}

// Patroni 3.0.2 runs with a ttl below the 20 s its documentation names as
// the minimum (and with any loop_wait and retry_timeout); so does custos, as
// long as the timing rule holds.
func TestDynamicShortTimingsAccepted(t *testing.T) {
	for _, in := range []string{
		`{"ttl": 10, "loop_wait": 1, "retry_timeout": 4}`,
		`{"ttl": 3, "loop_wait": 1, "retry_timeout": 1}`,
	} {
		dyn, ps := ParseDynamic([]byte(in))
		if len(ps) > 0 {
			t.Errorf("%s: %v", in, ps)
		}
		if dyn.LoopWait+2*dyn.RetryTimeout > dyn.TTL || dyn.TTL < MinTTL {
			t.Errorf("%s read as ttl %d, loop_wait %d, retry_timeout %d", in, dyn.TTL, dyn.LoopWait, dyn.RetryTimeout)
		}
	}
}

func TestDynamicInvalid(t *testing.T) {
	tests := []struct {
		in      string
		path    string
		message string
	}{
		{`{"ttl": 0}`, "ttl", "below the minimum 1"},
		{`{"ttl": 5}`, "ttl", "loop_wait + 2*retry_timeout must not exceed ttl, but 10 + 2*10 = 30 > 5"},
		{`{"loop_wait": 0}`, "loop_wait", "below the minimum 1"},
		{`{"retry_timeout": -1}`, "retry_timeout", "below the minimum 1"},
		{`{"ttl": "abc"}`, "ttl", `bad duration "abc"`},
		{`{"ttl": true}`, "ttl", "wrong type"},
		{`{"ttl": 30, "loop_wait": 10, "retry_timeout": 15}`, "ttl", "loop_wait + 2*retry_timeout must not exceed ttl, but 10 + 2*15 = 40 > 30"},
		{`{"maximum_lag_on_failover": -5}`, "maximum_lag_on_failover", "below the minimum 0"},
		{`{"maximum_lag_on_failover": "lots"}`, "maximum_lag_on_failover", "bad size"},
		{`{"synchronous_mode": "sometimes"}`, "synchronous_mode", `invalid value "sometimes"`},
		{`{"synchronous_mode": 3}`, "synchronous_mode", "wrong type"},
		{`{"synchronous_node_count": 0}`, "synchronous_node_count", "below the minimum 1"},
		{`{"failsafe_mode": "maybe"}`, "failsafe_mode", "wrong type: expected a boolean"},
		{`{"postgresql": {"use_slots": "maybe"}}`, "postgresql.use_slots", "wrong type"},
		{`{"postgresql": {"parameters": {"work_mem": [1]}}}`, "postgresql.parameters.work_mem", "wrong type"},
		{`{"postgresql": []}`, "postgresql", "wrong type: expected a table, got an array"},
		{`{"slots": {"s": {"type": "magic"}}}`, "slots.s.type", "invalid value magic"},
		{`{"slots": {"s": {"type": "logical", "database": "app"}}}`, "slots.s.plugin", "missing required value"},
		{`{"ignore_slots": [{"nmae": "x"}]}`, "ignore_slots[0].nmae", "unknown key"},
		{`{"slots": {"s": {"type": 5}}}`, "slots.s.type", "invalid value 5: want physical or logical"},
		{`{"slots": {"s": {}}}`, "slots.s.type", "missing required value"},
		{`{"slots": {"s": null}}`, "slots.s", "wrong type: expected a table, got null"},
		{`{"slots": {"s": {"type": "logical", "database": 7, "plugin": "p"}}}`, "slots.s.database", "wrong type: expected a string"},
		{`{"slots": []}`, "slots", "wrong type: expected a table"},
		{`{"ignore_slots": [{"name": 3}]}`, "ignore_slots[0].name", "wrong type: expected a string"},
		{`{"ignore_slots": ["x"]}`, "ignore_slots[0]", "wrong type: expected a table"},
		{`{"standby_cluster": {"port": "x", "host": "h"}}`, "standby_cluster.port", "wrong type"},
		{`{"standby_cluster": {"port": 5432}}`, "standby_cluster", "set host or restore_command"},
		{`[1, 2]`, "", "must be a JSON object"},
		{`{"ttl": 30`, "", "not valid JSON"},
		{`{} {}`, "", "trailing data"},
		{``, "", "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, ps := ParseDynamic([]byte(tc.in))
			if len(ps) != 1 {
				t.Fatalf("want one problem, got %d:\n%v", len(ps), ps)
			}
			if ps[0].Path != tc.path || !strings.Contains(ps[0].Message, tc.message) {
				t.Errorf("problem = %q, want path %q with %q", ps[0], tc.path, tc.message)
			}
		})
	}
}

func TestDynamicReportsEveryProblem(t *testing.T) {
	_, ps := ParseDynamic([]byte(`{"ttl": 10, "loop_wait": "x", "synchronous_mode": "maybe", "postgresql": {"use_slots": 7}}`))
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	want := []string{"loop_wait", "postgresql.use_slots", "synchronous_mode", "ttl"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %v, want %v\n%v", paths, want, ps)
	}
}

func TestDynamicUnmarshalJSON(t *testing.T) {
	var holder struct {
		Config Dynamic `json:"config"`
	}
	if err := json.Unmarshal([]byte(`{"config": {"ttl": 25, "loop_wait": 5, "retry_timeout": 10, "x": 1}}`), &holder); err != nil {
		t.Fatal(err)
	}
	if holder.Config.TTL != 25 || holder.Config.RetryTimeout != 10 || holder.Config.MaximumLagOnFailover != DefaultMaximumLagOnFailover {
		t.Errorf("decoded %+v", holder.Config)
	}
	// Limits are ParseDynamic's business; UnmarshalJSON fails on types only.
	if err := json.Unmarshal([]byte(`{"config": {"ttl": 5}}`), &holder); err != nil {
		t.Errorf("a value below a minimum failed UnmarshalJSON: %v", err)
	}
	err := json.Unmarshal([]byte(`{"config": {"ttl": "soon"}}`), &holder)
	if err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("type error not reported with its key: %v", err)
	}
}
