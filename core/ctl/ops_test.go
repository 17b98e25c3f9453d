package ctl

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// The switchover of the operator's day: the leader is asked, answers once
// the candidate leads, and the table shows the new leader.
func TestSwitchoverForce(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.answer("POST /switchover", func(r request) answer {
		h.moveLeader("node1", "node2")
		return answer{200, `Successfully switched over to "node2"`}
	})
	r := h.goldenRun("switchover_force", "", "switchover", "demo", "--candidate", "node2", "--force")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].member != "node1" || r.requests[0].body != `{"leader":"node1","candidate":"node2"}` {
		t.Errorf("exit %d, requests %v", r.code, r.requests)
	}
	if !strings.Contains(r.stdout, "2024-05-01 10:00:00.12345 Successfully switched over to \"node2\"\n") {
		t.Errorf("no timestamped answer:\n%s", r.stdout)
	}
}

// Without options every question is asked, the answers taken from stdin.
func TestSwitchoverQuestions(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	stdin := "\nnode3\n\ny\n" // default leader, node3, default "now", yes
	r := h.goldenRun("switchover_questions", stdin, "switchover", "demo")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].body != `{"leader":"node1","candidate":"node3"}` {
		t.Errorf("exit %d, requests %v\n%s", r.code, r.requests, r.stderr)
	}

	// "no" aborts and sends nothing.
	r = h.run("\nnode3\n\nn\n", "switchover", "demo")
	if r.code != exitFailure || !strings.Contains(r.stderr, "Error: Aborting switchover") || len(r.requests) != 0 {
		t.Errorf("declined: exit %d, stderr %q, requests %v", r.code, r.stderr, r.requests)
	}
}

// With no answers on stdin (a CI job), a command that would ask fails at
// once, naming the question and --force.
func TestNoAnswersWithoutTerminal(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	for _, args := range [][]string{
		{"switchover", "demo"},
		{"failover", "demo"},
		{"restart", "demo"},
		{"reload", "demo"},
		{"reinit", "demo", "node2"},
		{"flush", "demo", "restart"},
		{"edit-config", "demo", "-s", "loop_wait=5"},
		{"remove", "demo"},
	} {
		r := h.run("", args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "Error: no answer to \"") ||
			!strings.Contains(r.stderr, "standard input is closed (it is not a terminal)") || len(r.requests) != 0 {
			t.Errorf("%v: exit %d, stderr %q, requests %v", args, r.code, r.stderr, r.requests)
		}
		if args[0] != "remove" && !strings.Contains(r.stderr, "--force") {
			t.Errorf("%v: the error does not mention --force: %q", args, r.stderr)
		}
	}
	if h.key(dcs.KeyConfig) != string(opsRaw().Config.Data) {
		t.Error("/config changed")
	}
}

func TestSwitchoverScheduled(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.answer("POST /switchover", func(r request) answer {
		if err := h.backend("node1").Set(context.Background(), dcs.KeyFailover, []byte(`{"leader":"node1","member":"node3","scheduled_at":"2030-01-01T02:00:00+00:00"}`)); err != nil {
			t.Error(err)
		}
		return answer{202, "Switchover scheduled"}
	})
	r := h.goldenRun("switchover_scheduled", "", "switchover", "demo", "--primary", "node1", "--candidate", "node3", "--scheduled", "2030-01-01T03:00+01:00", "--force")
	if r.code != exitOK || r.requests[0].body != `{"leader":"node1","candidate":"node3","scheduled_at":"2030-01-01T03:00:00+01:00"}` {
		t.Errorf("exit %d, requests %v", r.code, r.requests)
	}
}

// When the leader's REST API cannot be reached, the request is written to
// /failover directly, as patronictl does.
func TestSwitchoverFallsBackToDCS(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.down("node1")
	r := h.goldenRun("switchover_fallback", "", "switchover", "demo", "--candidate", "node2", "--force")
	if r.code != exitOK {
		t.Errorf("exit %d", r.code)
	}
	if got := h.key(dcs.KeyFailover); got != `{"leader":"node1","member":"node2"}` {
		t.Errorf("/failover = %s", got)
	}
}

func TestSwitchoverRefused(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.answer("POST /switchover", func(request) answer { return answer{412, "candidate name does not match with sync_standby"} })
	r := h.goldenRun("switchover_refused", "", "switchover", "demo", "--candidate", "node2", "--force")
	if r.code != exitFailure || r.stderr != "" {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// Requests that make no sense are refused before anything is sent, with
// patronictl's messages.
func TestSwitchoverChecks(t *testing.T) {
	raw := opsRaw()
	raw.Members[2].Data = []byte(strings.Replace(string(raw.Members[2].Data), `"tags":{`, `"tags":{"nofailover":true,`, 1))
	h := newOpsHarness(t, raw)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"switchover", "demo", "--leader", "node2", "--force"}, "Member node2 is not the leader of cluster demo"},
		{[]string{"switchover", "demo", "--candidate", "node1", "--force"}, "Switchover target and source are the same."},
		{[]string{"switchover", "demo", "--candidate", "node3", "--force"}, "Member node3 does not exist in cluster demo or is tagged as nofailover"},
		{[]string{"switchover", "demo", "--candidate", "nobody", "--force"}, "Member nobody does not exist in cluster demo or is tagged as nofailover"},
		{[]string{"switchover", "demo", "--candidate", "node2", "--scheduled", "tomorrow", "--force"}, "Unable to parse scheduled timestamp (tomorrow)"},
		{[]string{"failover", "demo", "--force"}, "Failover could be performed only to a specific candidate"},
		{[]string{"failover", "demo", "--candidate", "node1", "--force"}, "Member node1 is already the leader of cluster demo"},
	} {
		r := h.run("", c.args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "Error: "+c.want) || len(r.requests) != 0 {
			t.Errorf("%v: exit %d, stderr %q, requests %v", c.args, r.code, r.stderr, r.requests)
		}
	}

	noLeader := opsRaw()
	noLeader.Leader = nil
	h = newOpsHarness(t, noLeader)
	if r := h.run("", "switchover", "demo", "--candidate", "node2", "--force"); r.code != exitFailure || !strings.Contains(r.stderr, "Error: This cluster has no leader") {
		t.Errorf("no leader: exit %d, stderr %q", r.code, r.stderr)
	}

	paused := opsRaw()
	paused.Config = value(`{"pause":true}`)
	h = newOpsHarness(t, paused)
	if r := h.run("", "switchover", "demo", "--candidate", "node2", "--scheduled", "2030-01-01T00:00Z", "--force"); r.code != exitFailure ||
		!strings.Contains(r.stderr, "Can't schedule switchover in the paused state") {
		t.Errorf("paused: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A failover without a leader goes to the candidate, Patroni 4.x's body.
func TestFailoverWithoutLeader(t *testing.T) {
	raw := opsRaw()
	raw.Leader = nil
	h := newOpsHarness(t, raw)
	h.answer("POST /failover", func(r request) answer {
		if _, err := h.backend("node2").AcquireLeader(context.Background()); err != nil {
			t.Error(err)
		}
		return answer{200, `Successfully failed over to "node2"`}
	})
	r := h.goldenRun("failover_no_leader", "", "failover", "demo", "--candidate", "node2", "--force")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].member != "node2" || r.requests[0].body != `{"candidate":"node2"}` {
		t.Errorf("exit %d, requests %v", r.code, r.requests)
	}
}

// In synchronous mode, failing over to an asynchronous replica asks once
// more.
func TestFailoverAsynchronousQuestion(t *testing.T) {
	raw := opsRaw()
	raw.Config = value(`{"synchronous_mode":true}`)
	raw.Sync = value(`{"leader":"node1","sync_standby":"node2"}`)
	h := newOpsHarness(t, raw)
	r := h.goldenRun("failover_async", "y\ny\n", "failover", "demo", "--candidate", "node3")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].member != "node1" {
		t.Errorf("exit %d, requests %v, stderr %s", r.code, r.requests, r.stderr)
	}
}

func TestRestart(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.answer("node3 POST /restart", func(request) answer { return answer{503, "restart conditions are not satisfied"} })
	r := h.goldenRun("restart_force", "", "restart", "demo", "--force", "--pending", "--timeout", "30s")
	if r.code != exitFailure {
		t.Errorf("exit %d, want %d (node3 failed)", r.code, exitFailure)
	}
	for _, q := range r.requests {
		if q.body != `{"timeout":"30s","restart_pending":true}` {
			t.Errorf("body %s", q.body)
		}
	}
	if len(r.requests) != 3 {
		t.Errorf("requests %v", r.requests)
	}

	// Questions: when, confirmation, version condition; a scheduled restart
	// of the replicas.
	h = newOpsHarness(t, opsRaw())
	stdin := "2030-01-01T02:00:00+00:00\ny\n15.9\n"
	r = h.goldenRun("restart_questions", stdin, "restart", "demo", "-r", "replica")
	if r.code != exitOK || len(r.requests) != 2 || r.requests[0].body != `{"schedule":"2030-01-01T02:00:00+00:00","postgres_version":"15.9"}` {
		t.Errorf("exit %d, requests %v, stderr %s", r.code, r.requests, r.stderr)
	}

	// One member by name, and --any picks one member only.
	r = h.run("", "restart", "demo", "node2", "--force")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].member != "node2" || r.requests[0].body != "{}" {
		t.Errorf("named member: exit %d, requests %v", r.code, r.requests)
	}
	r = h.run("", "restart", "demo", "--any", "--force")
	if r.code != exitOK || len(r.requests) != 1 {
		t.Errorf("--any: exit %d, requests %v", r.code, r.requests)
	}
	r = h.run("", "restart", "demo", "node1", "-r", "replica", "--force")
	if r.code != exitFailure || !strings.Contains(r.stderr, "Error: No replica among provided members") {
		t.Errorf("role mismatch: exit %d, stderr %q", r.code, r.stderr)
	}
	r = h.run("", "restart", "demo", "--pg-version", "fifteen", "--force")
	if r.code != exitFailure || !strings.Contains(r.stderr, "Invalid PostgreSQL version format") || len(r.requests) != 0 {
		t.Errorf("bad version: exit %d, stderr %q", r.code, r.stderr)
	}
	r = h.run("", "restart", "demo", "-r", "boss", "--force")
	if r.code != exitUsage || !strings.Contains(r.stderr, `invalid role "boss"`) {
		t.Errorf("bad role: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A scheduled restart with --force replaces the one already scheduled; a
// 409 is reported as patronictl does.
func TestRestartScheduledAgain(t *testing.T) {
	raw := opsRaw()
	raw.Members[1].Data = []byte(strings.Replace(string(raw.Members[1].Data), `"timeline":2`, `"timeline":2,"scheduled_restart":{"schedule":"2030-01-01T01:00:00+00:00"}`, 1))
	h := newOpsHarness(t, raw)
	h.answer("node3 POST /restart", func(request) answer { return answer{409, "Another restart is already scheduled"} })
	r := h.goldenRun("restart_scheduled_again", "", "restart", "demo", "node2", "node3", "--scheduled", "2030-01-01T02:00Z", "--force")
	want := []string{"DELETE node2 /restart", "POST node2 /restart", "POST node3 /restart"}
	if got := methods(r.requests); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("requests %v, want %v", got, want)
	}
	paused := opsRaw()
	paused.Config = value(`{"pause":true}`)
	h = newOpsHarness(t, paused)
	if r := h.run("", "restart", "demo", "--scheduled", "2030-01-01T02:00Z", "--force"); r.code != exitFailure || !strings.Contains(r.stderr, "Can't schedule restart in the paused state") {
		t.Errorf("paused: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestReload(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.answer("node2 POST /reload", func(request) answer { return answer{200, ""} })
	h.answer("node3 POST /reload", func(request) answer { return answer{503, "reload failed"} })
	r := h.goldenRun("reload", "y\n", "reload", "demo")
	if r.code != exitFailure || len(r.requests) != 3 {
		t.Errorf("exit %d, requests %v", r.code, r.requests)
	}
}

// reinit --wait follows the member until it is no longer creating a
// replica; "already in progress" asks whether to cancel it.
func TestReinit(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	polls := 0
	h.answer("GET /patroni", func(r request) answer {
		polls++
		state := "creating replica"
		if polls > 2 {
			state = "running"
		}
		return answer{200, `{"state":"` + state + `","role":"replica","dcs_last_seen":0,"patroni":{"version":"4.1.4","scope":"demo"}}`}
	})
	r := h.goldenRun("reinit_wait", "", "reinit", "demo", "node3", "--force", "--wait", "--from-leader")
	if r.code != exitOK || r.requests[0].body != `{"force":true,"from_leader":true}` || polls != 3 {
		t.Errorf("exit %d, polls %d, requests %v", r.code, polls, r.requests)
	}

	h = newOpsHarness(t, opsRaw())
	h.answer("POST /reinitialize", func(r request) answer {
		if r.body == `{"force":true}` {
			return answer{200, "reinitialize started"}
		}
		return answer{503, "restart already in progress"}
	})
	r = h.goldenRun("reinit_in_progress", "node2\ny\ny\n", "reinit", "demo")
	if r.code != exitOK || len(r.requests) != 2 || r.requests[1].body != `{"force":true}` {
		t.Errorf("exit %d, requests %v", r.code, r.requests)
	}
	if r := h.run("", "reinit", "demo", "node1", "--force"); r.code != exitFailure || !strings.Contains(r.stderr, "No replica among provided members") {
		t.Errorf("the leader: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestFlushRestart(t *testing.T) {
	raw := opsRaw()
	raw.Members[2].Data = []byte(strings.Replace(string(raw.Members[2].Data), `"timeline":2`, `"timeline":2,"scheduled_restart":{"schedule":"2030-01-01T01:00:00+00:00","postgres_version":"15.9"}`, 1))
	h := newOpsHarness(t, raw)
	r := h.goldenRun("flush_restart", "", "flush", "demo", "restart", "--force")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].String() != "DELETE node3 /restart" {
		t.Errorf("exit %d, requests %v", r.code, r.requests)
	}
}

func TestFlushSwitchover(t *testing.T) {
	raw := opsRaw()
	raw.Failover = value(`{"leader":"node1","member":"node2","scheduled_at":"2030-01-01T02:00:00+00:00"}`)
	h := newOpsHarness(t, raw)
	h.down("node1")
	r := h.goldenRun("flush_switchover", "", "flush", "demo", "switchover")
	if want := []string{"DELETE node2 /switchover"}; strings.Join(methods(r.requests), ",") != strings.Join(want, ",") || r.code != exitOK {
		t.Errorf("exit %d, requests %v (the leader is down: the next member is asked)", r.code, methods(r.requests))
	}

	// Nobody answers: /failover is cleared in the DCS, over the version read.
	h = newOpsHarness(t, raw)
	for _, n := range []string{"node1", "node2", "node3"} {
		h.down(n)
	}
	r = h.goldenRun("flush_switchover_dcs", "", "flush", "demo", "switchover")
	if r.code != exitOK || h.key(dcs.KeyFailover) != "{}" {
		t.Errorf("exit %d, /failover %s", r.code, h.key(dcs.KeyFailover))
	}
	if r := h.run("", "flush", "demo", "switchover"); r.code != exitOK || r.stdout != "No pending scheduled switchover\n" {
		t.Errorf("nothing scheduled: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := h.run("", "flush", "demo", "later"); r.code != exitUsage || !strings.Contains(r.stderr, `invalid target "later"`) {
		t.Errorf("bad target: exit %d, stderr %q", r.code, r.stderr)
	}
}

// pause --wait: PATCH /config on the leader, then the member keys are
// watched until every member shows pause.
func TestPauseResume(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.answer("PATCH /config", func(r request) answer {
		var patch map[string]any
		_ = json.Unmarshal([]byte(r.body), &patch)
		paused := patch["pause"] == true
		cfg := `{"ttl":30,"loop_wait":1,"retry_timeout":10}`
		if paused {
			cfg = `{"ttl":30,"loop_wait":1,"retry_timeout":10,"pause":true}`
		}
		if err := h.backend("node1").Set(context.Background(), dcs.KeyConfig, []byte(cfg)); err != nil {
			t.Error(err)
		}
		go func() {
			time.Sleep(50 * time.Millisecond) // the members notice within a cycle
			for _, n := range []string{"node1", "node2", "node3"} {
				h.touch(n, func(m map[string]any) {
					if paused {
						m["pause"] = true
					} else {
						delete(m, "pause")
					}
				})
			}
		}()
		return answer{200, cfg}
	})
	r := h.goldenRun("pause_wait", "", "pause", "demo", "--wait")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].String() != `PATCH node1 /config {"pause":true}` {
		t.Errorf("exit %d, requests %v", r.code, r.requests)
	}
	if r := h.run("", "pause", "demo"); r.code != exitFailure || !strings.Contains(r.stderr, "Error: Cluster is already paused") {
		t.Errorf("paused twice: exit %d, stderr %q", r.code, r.stderr)
	}
	h.down("node1")
	r = h.goldenRun("resume_wait", "", "resume", "demo", "--wait")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].String() != `PATCH node2 /config {"pause":null}` {
		t.Errorf("exit %d, requests %v (the leader is down: node2 is asked)", r.code, r.requests)
	}
	if r := h.run("", "resume", "demo"); r.code != exitFailure || !strings.Contains(r.stderr, "Error: Cluster is not paused") {
		t.Errorf("resumed twice: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestEditConfigSet(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	r := h.goldenRun("edit_config_set", "", "edit-config", "demo",
		"-s", "loop_wait=5", "-s", "postgresql.use_pg_rewind=null", "-p", "max_connections=200", "--pg", "auto_explain.log_min_duration='1s'",
		"-s", "synchronous_mode=on", "--force")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(h.key(dcs.KeyConfig)), &got); err != nil {
		t.Fatal(err)
	}
	pg := got["postgresql"].(map[string]any)
	params := pg["parameters"].(map[string]any)
	if got["loop_wait"] != 5.0 || got["synchronous_mode"] != true || pg["use_pg_rewind"] != nil ||
		params["max_connections"] != 200.0 || params["auto_explain.log_min_duration"] != "1s" || params["wal_log_hints"] != "on" {
		t.Errorf("/config = %s", h.key(dcs.KeyConfig))
	}

	if r := h.run("", "edit-config", "demo", "-s", "loop_wait=5", "--force"); r.code != exitOK || r.stdout != "Not changed\n" {
		t.Errorf("no change: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := h.run("", "edit-config", "demo", "-q", "-s", "loop_wait=5", "--force"); r.code != exitOK || r.stdout != "" {
		t.Errorf("quiet: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := h.run("", "edit-config", "demo", "-s", "loop_wait", "--force"); r.code != exitFailure || !strings.Contains(r.stderr, "Error: Invalid parameter setting loop_wait") {
		t.Errorf("bad pair: exit %d, stderr %q", r.code, r.stderr)
	}
}

// Invalid values are refused with the key and the reason, and nothing is
// written.
func TestEditConfigInvalid(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	before := h.key(dcs.KeyConfig)
	r := h.goldenRun("edit_config_invalid", "", "edit-config", "demo", "-s", "ttl=0", "-s", "retry_timeout=abc", "--force")
	if r.code != exitFailure || !strings.Contains(r.stderr, "ttl: out of range: 0 is below the minimum 1") || !strings.Contains(r.stderr, "retry_timeout: ") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = h.run("", "edit-config", "demo", "-s", "loop_wait=20", "--force")
	if r.code != exitFailure || !strings.Contains(r.stderr, "loop_wait + 2*retry_timeout must not exceed ttl") {
		t.Errorf("timing rule: exit %d, stderr %q", r.code, r.stderr)
	}
	if h.key(dcs.KeyConfig) != before {
		t.Errorf("/config changed to %s", h.key(dcs.KeyConfig))
	}
}

// racingBackend changes /config just before custosctl writes it.
type racingBackend struct {
	dcs.Backend
	race func()
}

func (b racingBackend) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	b.race()
	return b.Backend.CompareAndSet(ctx, key, data, version)
}

func TestEditConfigConcurrentChange(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.wrap = func(b dcs.Backend) dcs.Backend {
		return racingBackend{Backend: b, race: func() {
			if err := h.backend("node1").Set(context.Background(), dcs.KeyConfig, []byte(`{"ttl":40}`)); err != nil {
				t.Error(err)
			}
		}}
	}
	r := h.run("", "edit-config", "demo", "-s", "loop_wait=5", "--force", "-q")
	if r.code != exitFailure || !strings.Contains(r.stderr, "Error: Config modification aborted due to concurrent changes") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if got := h.key(dcs.KeyConfig); got != `{"ttl":40}` {
		t.Errorf("/config = %s, want the concurrent write", got)
	}
}

// --apply merges a YAML file (nulls delete), --replace replaces; from
// stdin, --force is required.
func TestEditConfigApplyReplace(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	dir := t.TempDir()
	h.subst[dir] = "$TMP"
	file := filepath.Join(dir, "changes.yaml")
	if err := os.WriteFile(file, []byte("loop_wait: 5\npostgresql:\n  parameters:\n    max_connections: null\n    work_mem: 8MB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := h.goldenRun("edit_config_apply", "y\n", "edit-config", "demo", "--apply", file)
	if r.code != exitOK || !strings.Contains(h.key(dcs.KeyConfig), `"work_mem":"8MB"`) || strings.Contains(h.key(dcs.KeyConfig), "max_connections") {
		t.Errorf("exit %d, /config %s", r.code, h.key(dcs.KeyConfig))
	}
	r = h.run("ttl: 40\n", "edit-config", "demo", "--replace", "-")
	if r.code != exitOK || !strings.HasSuffix(r.stdout, "Use --force option to apply changes\n") || strings.Contains(h.key(dcs.KeyConfig), `"ttl":40`) {
		t.Errorf("stdin without --force: exit %d, stdout %q", r.code, r.stdout)
	}
	r = h.run("ttl: 40\n", "edit-config", "demo", "--replace", "-", "--force", "-q")
	if r.code != exitOK || h.key(dcs.KeyConfig) != `{"ttl":40}` {
		t.Errorf("replace: exit %d, stderr %q, /config %s", r.code, r.stderr, h.key(dcs.KeyConfig))
	}
}

// With no edit option, $EDITOR edits the YAML.
func TestEditConfigEditor(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	dir := t.TempDir()
	editor := filepath.Join(dir, "editor")
	script := "#!/bin/sh\nsed -i -e 's/^loop_wait: 10$/loop_wait: 7/' -e 's/^ttl: 30$/ttl: 35/' \"$1\"\n"
	if err := os.WriteFile(editor, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := h.runEnv("y\n", map[string]string{"EDITOR": editor}, "-d", "etcd3://127.0.0.1:1", "edit-config", "demo")
	golden(t, "edit_config_editor", h.transcript("y\n", []string{"edit-config", "demo"}, r))
	if r.code != exitOK || !strings.Contains(h.key(dcs.KeyConfig), `"loop_wait":7`) || !strings.Contains(h.key(dcs.KeyConfig), `"ttl":35`) {
		t.Errorf("exit %d, stderr %q, /config %s", r.code, r.stderr, h.key(dcs.KeyConfig))
	}
	failing := filepath.Join(dir, "failing")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = h.runEnv("", map[string]string{"EDITOR": failing}, "-d", "etcd3://127.0.0.1:1", "edit-config", "demo")
	if r.code != exitFailure || !strings.Contains(r.stderr, "Editor exited with return code 3") {
		t.Errorf("failing editor: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestShowConfigHistoryTopology(t *testing.T) {
	raw := opsRaw()
	raw.History = value(`[[1,25165984,"no recovery target specified","2024-05-01T09:00:00.000000+00:00","node1"],[2,50331816,"no recovery target specified","2024-05-01T09:30:00+00:00"]]`)
	raw.Members = append(raw.Members, dcs.Member{Name: "node4", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5435/postgres","api_url":"{node4}","state":"running","role":"replica","xlog_location":48758784,"timeline":2,"tags":{"replicatefrom":"node3"}}`)})
	h := newOpsHarness(t, raw)
	h.goldenRun("show_config", "", "show-config", "demo")
	for _, f := range []string{formatPretty, formatTSV, formatJSON, formatYAML} {
		h.goldenRun("history."+f, "", "history", "demo", "-f", f)
	}
	h.goldenRun("topology", "", "topology", "demo")
	empty := newOpsHarness(t, &dcs.Cluster{})
	if r := empty.run("", "history", "demo"); r.stdout != "+----+-----+--------+-----------+------------+\n| TL | LSN | Reason | Timestamp | New Leader |\n+----+-----+--------+-----------+------------+\n+----+-----+--------+-----------+------------+\n" {
		t.Errorf("empty history:\n%s", r.stdout)
	}
	if r := empty.run("", "show-config", "demo"); r.stdout != "{}\n\n" {
		t.Errorf("no /config: %q", r.stdout)
	}
}

func TestDSN(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dsn", "demo"}, "host=127.0.0.1 port=5432\n"},
		{[]string{"dsn", "demo", "-r", "replica"}, "host=127.0.0.1 port=5433\n"},
		{[]string{"dsn", "demo", "-m", "node3"}, "host=127.0.0.1 port=5434\n"},
	} {
		if r := h.run("", c.args...); r.code != exitOK || r.stdout != c.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", c.args, r.code, r.stdout, r.stderr)
		}
	}
	if r := h.run("", "dsn", "demo", "-r", "replica", "-m", "node2"); r.code != exitFailure || !strings.Contains(r.stderr, "--role and --member are mutually exclusive options") {
		t.Errorf("both: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.run("", "dsn", "demo", "-r", "standby-leader"); r.code != exitFailure || !strings.Contains(r.stderr, "Can not find a suitable member") {
		t.Errorf("none: exit %d, stderr %q", r.code, r.stderr)
	}
}

// query's own -c and -d after the command name; a member that cannot be
// found is reported as patronictl does, without connecting anywhere.
func TestQueryWithoutMember(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	r := h.run("", "query", "demo", "-m", "nobody", "-c", "SELECT 1", "-d", "postgres")
	if r.code != exitFailure || r.stdout != "2024-05-01 10:00:00\tNo connection to member nobody is available\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := h.run("", "query", "demo"); r.code != exitFailure || !strings.Contains(r.stderr, "You need to specify either --command or --file") {
		t.Errorf("no SQL: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRemove(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	for _, c := range []struct{ stdin, want string }{
		{"other\n", "Cluster names specified do not match"},
		{"demo\nyes\n", `You did not exactly type "Yes I am aware"`},
		{"demo\nYes I am aware\nnode2\n", "You did not specify the current leader of the cluster"},
	} {
		if r := h.run(c.stdin, "remove", "demo"); r.code != exitFailure || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q", c.stdin, r.code, r.stderr)
		}
	}
	if h.read().Leader == nil {
		t.Fatal("the cluster went away")
	}
	r := h.goldenRun("remove", "demo\nYes I am aware\nnode1\n", "remove", "demo")
	c := h.read()
	if r.code != exitOK || c.Leader != nil || len(c.Members) != 0 || c.Config != nil || c.Initialize != nil {
		t.Errorf("exit %d, cluster left: %+v", r.code, c)
	}
}

func TestVersion(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	h.answer("node1 GET /patroni", func(request) answer {
		return answer{200, `{"state":"running","role":"primary","server_version":150008,"dcs_last_seen":0,"patroni":{"version":"4.1.4","scope":"demo","name":"node1"},"custos":{"version":"0.1.0"}}`}
	})
	h.answer("node2 GET /patroni", func(request) answer {
		return answer{200, `{"state":"running","role":"replica","server_version":90624,"patroni":{"version":"3.0.2","scope":"demo"}}`}
	})
	h.down("node3")
	r := h.run("", "version", "demo")
	lines := strings.Split(r.stdout, "\n")
	if r.code != exitOK || len(lines) != 6 || !strings.HasPrefix(lines[0], "custosctl version ") || lines[1] != "" ||
		lines[2] != "node1: custos 0.1.0 PostgreSQL 15.8" || lines[3] != "node2: Patroni 3.0.2 PostgreSQL 9.6.24" ||
		!strings.HasPrefix(lines[4], "node3: failed to get version: ") {
		t.Errorf("exit %d:\n%s", r.code, r.stdout)
	}
	if r := h.run("", "version", "demo", "node2"); strings.Count(r.stdout, "node") != 1 {
		t.Errorf("one member:\n%s", r.stdout)
	}
	if r := runVersionOnly(t); !strings.HasPrefix(r, "custosctl version ") || strings.Count(r, "\n") != 1 {
		t.Errorf("no cluster: %q", r)
	}
}

func runVersionOnly(t *testing.T) string {
	t.Helper()
	code, stdout, stderr := runCtl(context.Background(), nil, "version")
	if code != exitOK {
		t.Errorf("exit %d: %s", code, stderr)
	}
	return stdout
}

// The REST calls carry the [ctl] credentials, else the [restapi] ones.
func TestCredentials(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	restOnly := writeConfig(t, "", "false") + ""
	appendTo(t, restOnly, "\n[restapi.authentication]\nusername = \"rest\"\npassword = \"r-secret\"\n")
	r := h.runEnv("", nil, "-c", restOnly, "-d", "etcd3://127.0.0.1:1", "reload", "demo", "node2", "--force")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].auth != basicAuth("rest", "r-secret") {
		t.Errorf("[restapi] credentials: exit %d, stderr %q, requests %+v", r.code, r.stderr, r.requests)
	}
	both := writeConfig(t, "", "false")
	appendTo(t, both, "\n[restapi.authentication]\nusername = \"rest\"\npassword = \"r-secret\"\n\n[ctl.authentication]\nusername = \"ctl\"\npassword = \"c-secret\"\n")
	r = h.runEnv("", nil, "-c", both, "-d", "etcd3://127.0.0.1:1", "reload", "demo", "node2", "--force")
	if r.code != exitOK || len(r.requests) != 1 || r.requests[0].auth != basicAuth("ctl", "c-secret") {
		t.Errorf("[ctl] credentials: exit %d, stderr %q, requests %+v", r.code, r.stderr, r.requests)
	}
	h.answer("POST /reload", func(r request) answer { return answer{401, "not authenticated"} })
	r = h.run("", "reload", "demo", "node2", "--force")
	if r.code != exitFailure || r.stdout[strings.LastIndex(r.stdout[:len(r.stdout)-1], "\n")+1:] != "Failed: reload for member node2, status code=401, (not authenticated)\n" {
		t.Errorf("401: exit %d, stdout %q", r.code, r.stdout)
	}
}

// resume refuses while a member's key shows a running primary that does not
// hold the leader key: resumed, another member would promote beside it.
func TestResumeRefusesAPrimaryWithoutTheKey(t *testing.T) {
	h := newOpsHarness(t, opsRaw())
	if err := h.backend("node1").Set(context.Background(), dcs.KeyConfig, []byte(`{"ttl":30,"loop_wait":1,"retry_timeout":10,"pause":true}`)); err != nil {
		t.Fatal(err)
	}
	h.touch("node2", func(m map[string]any) { m["role"], m["state"] = "primary", "running" })
	h.answer("PATCH /config", func(request) answer { return answer{200, `{}`} })
	r := h.run("", "resume", "demo")
	if r.code != exitFailure || len(r.requests) != 0 || !strings.Contains(r.stderr, `member node2 runs as a primary but does not hold the leader key (held by "node1")`) {
		t.Errorf("exit %d, requests %v, stderr %q", r.code, r.requests, r.stderr)
	}
	if r := h.run("", "resume", "demo", "--force"); r.code != exitOK || len(r.requests) != 1 {
		t.Errorf("--force: exit %d, requests %v, stderr %q", r.code, r.requests, r.stderr)
	}
}
