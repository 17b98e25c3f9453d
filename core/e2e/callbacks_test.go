//go:build integration

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// callbackScript records each call's arguments, one line per call, in
// the file named by its first argument.
const callbackScript = `#!/bin/sh
out="$1"; shift
echo "$*" >> "$out"
`

// withCallbacks gives every member [postgresql.callbacks] scripts that
// record their calls in <member dir>/callbacks.log.
func withCallbacks(t *testing.T, dir string) func(m *member) {
	script := filepath.Join(dir, "callback.sh")
	if err := os.WriteFile(script, []byte(callbackScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return func(m *member) {
		log := filepath.Join(m.dir, "callbacks.log")
		cmd := fmt.Sprintf("%s %s", script, log)
		m.extra = append(m.extra, "[postgresql.callbacks]")
		for _, a := range []string{"on_start", "on_stop", "on_restart", "on_reload", "on_role_change"} {
			m.extra = append(m.extra, fmt.Sprintf("%s = %q", a, cmd))
		}
	}
}

// callbackCalls returns the calls recorded so far: "action role scope".
func (m *member) callbackCalls() []string {
	b, err := os.ReadFile(filepath.Join(m.dir, "callbacks.log"))
	if err != nil {
		return nil
	}
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

// waitCalls waits until the member's calls match want (actions and roles,
// "on_start primary", ...; the scope is checked too) and stay so for a
// moment. An entry starting with "?" may be missing: Patroni makes that
// call or not depending on timing (a replica that sees the cluster without
// a leader for a moment detaches from the old one, with a reload).
func (c *testCluster) waitCalls(t *testing.T, m *member, want []string) {
	t.Helper()
	check := func() error {
		got := m.callbackCalls()
		if !matchCalls(got, want, c.scope) {
			return fmt.Errorf("%s's callback calls:\n  %s\nwant:\n  %s", m.name,
				strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		return nil
	}
	poll.Eventually(t, opTimeout, m.name+"'s callback calls", check)
	time.Sleep(time.Second) // nothing more comes
	if err := check(); err != nil {
		t.Error(err)
	}
}

// matchCalls reports whether got (as callbackCalls returns them) matches
// the pattern want, whose "?" entries are optional.
func matchCalls(got, want []string, scope string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	w, optional := strings.CutPrefix(want[0], "?")
	token := strings.ReplaceAll(w+" "+scope, " ", "_")
	if optional && matchCalls(got, want[1:], scope) {
		return true
	}
	return len(got) > 0 && got[0] == token && matchCalls(got[1:], want[1:], scope)
}

// TestCallbacks: scripts of [postgresql.callbacks] are called as Patroni
// calls them (`<script> <action> <role> <scope>`), every event in order,
// through a bootstrap, a switchover, a failover, a restart and a reload.
func TestCallbacks(t *testing.T) {
	t.Parallel()
	// Not t.TempDir(): its parents are private to root, the agents run as
	// postgres.
	dir, err := os.MkdirTemp("", "custos-callbacks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOpts{edit: withCallbacks(t, dir)})
	leader := c.waitHealthy(t, formTimeout)
	want := map[string][]string{}
	for _, m := range c.m {
		if m == leader {
			want[m.name] = []string{"on_start primary"}
		} else {
			want[m.name] = []string{"on_start replica"}
		}
	}
	check := func(step string) {
		t.Helper()
		for _, m := range c.m {
			c.waitCalls(t, m, want[m.name])
		}
		if t.Failed() {
			t.Fatalf("after %s", step)
		}
	}
	check("the bootstrap")

	// A switchover: the old leader stops and comes back as a replica, the
	// candidate promotes, the third member follows the new leader.
	others := c.others(leader)
	cand, third := others[0], others[1]
	ctlOK(t, c, "switchover", c.scope, "--candidate", cand.name, "--force")
	c.waitHealthy(t, opTimeout)
	want[leader.name] = append(want[leader.name], "on_stop primary", "on_role_change replica")
	want[cand.name] = append(want[cand.name], "on_role_change primary")
	want[third.name] = append(want[third.name], "?on_reload replica", "on_reload replica")
	check("the switchover")

	// A failover: the new primary's machine dies; a replica promotes, the
	// other follows it; the dead member's agent starts afresh and rejoins.
	cand.kill(t, agentAndPostmaster, syscall.SIGKILL)
	next := c.waitWritableLeader(t, cand)
	rest := leader
	if next == leader {
		rest = third
	}
	want[next.name] = append(want[next.name], "on_role_change primary")
	want[rest.name] = append(want[rest.name], "?on_reload replica", "on_reload replica")
	cand.restart(t)
	c.waitHealthy(t, failoverTimeout)
	want[cand.name] = append(want[cand.name], "on_start replica")
	check("the failover")

	// A restart of a replica and of the primary.
	ctlOK(t, c, "restart", c.scope, rest.name, "--force")
	want[rest.name] = append(want[rest.name], "on_restart replica")
	ctlOK(t, c, "restart", c.scope, next.name, "--force")
	want[next.name] = append(want[next.name], "on_restart primary")
	check("the restarts")

	// A configuration change every member applies with a reload.
	ctlOK(t, c, "edit-config", c.scope, "--force", "-p", "work_mem=7MB")
	for _, m := range c.m {
		role := "replica"
		if m == next {
			role = "primary"
		}
		want[m.name] = append(want[m.name], "on_reload "+role)
	}
	check("the reload")
}

// prePromoteScript fails while the file named by its argument exists.
const prePromoteScript = `#!/bin/sh
[ ! -e "$1" ]
`

// TestPrePromote: a pre_promote that fails keeps the only member that could
// take over from promoting (the key is released again); once it succeeds,
// the member promotes.
func TestPrePromote(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "custos-prepromote-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script, veto := filepath.Join(dir, "pre_promote.sh"), filepath.Join(dir, "veto")
	if err := os.WriteFile(script, []byte(prePromoteScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(veto, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOpts{members: 2, timings: shortTimings, edit: func(m *member) {
		m.lines = map[string][]string{"postgresql": {fmt.Sprintf("pre_promote = %q", script+" "+veto)}}
	}})
	old := c.waitHealthy(t, formTimeout)
	next := c.others(old)[0]
	offset := next.logSize()
	old.kill(t, agentAndPostmaster, syscall.SIGKILL)

	poll.Eventually(t, failoverTimeout, next.name+" to cancel a promotion", func() error {
		for _, line := range next.logSince(offset) {
			if strings.Contains(line, "promotion cancelled because the pre_promote script failed") {
				return nil
			}
		}
		return fmt.Errorf("no cancelled promotion logged yet")
	})
	// Vetoed, it stays a replica: it gives the key up and never accepts
	// writes.
	poll.Eventually(t, opTimeout, next.name+" to release the leader key", func() error {
		if kv := c.mustDCS(t).kv["leader"]; kv != nil {
			return fmt.Errorf("the leader key names %s", kv.Value)
		}
		return nil
	})
	until := time.Now().Add(c.timings().ttlDuration())
	for time.Now().Before(until) {
		if ok, err := next.writableWithin(guardTimeout); err == nil && ok {
			t.Fatalf("%s accepts writes although pre_promote refused its promotion", next.name)
		}
		time.Sleep(guardSample)
	}

	if err := os.Remove(veto); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, failoverTimeout, next.name+" to promote once pre_promote succeeds", func() error {
		ok, err := next.writable()
		if err != nil || !ok {
			return fmt.Errorf("writable %v (%v)", ok, err)
		}
		return nil
	})
}

// hookDir makes a directory the agents (postgres) can read for hook
// scripts; it is removed at the end of the test.
func hookDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "custos-hooks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeScript(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

// beforeStopScript records whether PostgreSQL still ran when it was
// called (its postmaster.pid names a live process), then fails: a failing
// before_stop does not keep the server from stopping.
const beforeStopScript = `#!/bin/sh
datadir="$1"; out="$2"
pid=$(head -1 "$datadir/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo running >> "$out"; else echo stopped >> "$out"; fi
exit 3
`

// TestBeforeStop: before_stop runs before every stop, while PostgreSQL
// still runs; its failure does not hold the stop up.
func TestBeforeStop(t *testing.T) {
	t.Parallel()
	dir := hookDir(t)
	script := filepath.Join(dir, "before_stop.sh")
	writeScript(t, script, beforeStopScript)
	c := startCluster(t, clusterOpts{members: 1, edit: func(m *member) {
		out := filepath.Join(m.dir, "before_stop.log")
		m.lines = map[string][]string{"postgresql": {fmt.Sprintf("before_stop = %q", script+" "+m.dataDir+" "+out)}}
	}})
	m := c.waitHealthy(t, formTimeout)
	out := filepath.Join(m.dir, "before_stop.log")
	pid := m.postmasterPID()
	ctlOK(t, c, "restart", c.scope, m.name, "--force")
	poll.Eventually(t, opTimeout, m.name+" to run a new postmaster", func() error {
		if p := m.postmasterPID(); p == 0 || p == pid {
			return fmt.Errorf("postmaster %d", p)
		}
		if ok, err := m.writable(); err != nil || !ok {
			return fmt.Errorf("writable %v (%v)", ok, err)
		}
		return nil
	})
	b, err := os.ReadFile(out)
	if got := strings.TrimSpace(string(b)); err != nil || got != "running" {
		t.Fatalf("before_stop calls before the restart's stop: %q (%v), want one, made while postgres ran", got, err)
	}
	// And before the stop of an agent that shuts down.
	m.kill(t, agentOnly, syscall.SIGTERM)
	m.waitExit(t, opTimeout)
	b, err = os.ReadFile(out)
	if got := strings.Fields(string(b)); err != nil || !slices.Equal(got, []string{"running", "running"}) {
		t.Fatalf("before_stop calls after the shutdown: %q (%v), want two, made while postgres ran", got, err)
	}
}

// postBootstrapScript creates a table through the connection string it
// is given, except on its first call, which fails (the file named by its
// first argument exists until then).
const postBootstrapScript = `#!/bin/sh
once="$1"; psql="$2"; conn="$3"
if [ -e "$once" ]; then rm -f "$once"; exit 1; fi
exec "$psql" "$conn" -v ON_ERROR_STOP=1 -c "create table made_by_post_bootstrap (id int)"
`

// TestPostBootstrap: post_bootstrap runs on the new cluster with a
// connection string (the password in PGPASSFILE); a failing one fails the
// bootstrap, whose data directory goes, and the cluster is bootstrapped
// again, this time with what the script made.
func TestPostBootstrap(t *testing.T) {
	t.Parallel()
	dir := hookDir(t)
	script, once := filepath.Join(dir, "post_bootstrap.sh"), filepath.Join(dir, "fail-once")
	writeScript(t, script, postBootstrapScript)
	if err := os.WriteFile(once, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	chownToAgent(t, dir) // the script removes the marker as postgres
	c := startCluster(t, clusterOpts{members: 2, edit: func(m *member) {
		cmd := fmt.Sprintf("%s %s %s", script, once, filepath.Join(m.binDir, "psql"))
		m.lines = map[string][]string{"bootstrap": {fmt.Sprintf("post_bootstrap = %q", cmd)}}
	}})
	leader := c.waitHealthy(t, formTimeout)
	if _, err := os.Stat(once); !os.IsNotExist(err) {
		t.Fatalf("post_bootstrap never failed once: %v", err)
	}
	if got, err := leader.query("select count(*) from made_by_post_bootstrap"); err != nil || len(got) != 1 || got[0] != "0" {
		t.Fatalf("the table post_bootstrap made: %v (%v)", got, err)
	}
	failed := false
	for _, m := range c.m {
		for _, line := range m.logSince(0) {
			if strings.Contains(line, "post_bootstrap") && strings.Contains(line, "bootstrap failed") {
				failed = true
			}
		}
	}
	if !failed {
		t.Errorf("no member logged the failed bootstrap")
	}
}

// customBootstrapScript records its arguments, fails while the file named
// by its first argument exists (removing it), and otherwise creates the
// cluster with initdb and leaves a mark in it.
const customBootstrapScript = `#!/bin/sh
once="$1"; initdb="$2"; args="$3"; shift 3
echo "$*" >> "$args"
if [ -e "$once" ]; then rm -f "$once"; echo "refusing once" >&2; exit 1; fi
for a in "$@"; do case "$a" in --datadir=*) datadir="${a#--datadir=}";; esac; done
"$initdb" -D "$datadir" -U postgres --auth=trust >/dev/null || exit 2
echo restored > "$datadir/made_by_custom_bootstrap"
`

// TestCustomBootstrap: [bootstrap] method names a section whose command
// creates the cluster, called with Patroni's arguments; the first call
// fails, its data directory goes, and another member bootstraps the
// cluster with the command, which the other members then clone.
func TestCustomBootstrap(t *testing.T) {
	t.Parallel()
	dir := hookDir(t)
	script, once, args := filepath.Join(dir, "restore.sh"), filepath.Join(dir, "fail-once"), filepath.Join(dir, "args")
	writeScript(t, script, customBootstrapScript)
	for _, f := range []string{once, args} {
		if err := os.WriteFile(f, nil, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	chownToAgent(t, dir)
	chownToAgent(t, args)
	c := startCluster(t, clusterOpts{members: 3, edit: func(m *member) {
		cmd := fmt.Sprintf("%s %s %s %s", script, once, filepath.Join(m.binDir, "initdb"), args)
		m.lines = map[string][]string{
			"bootstrap":         {`method = "restore"`},
			"bootstrap.restore": {fmt.Sprintf("command = %q", cmd), `target = "latest"`},
		}
	}})
	leader := c.waitHealthy(t, formTimeout)
	b, err := os.ReadFile(args)
	if err != nil {
		t.Fatal(err)
	}
	calls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(calls) != 2 {
		t.Fatalf("the command ran %d times, want 2 (one failure, one success):\n%s", len(calls), b)
	}
	want := fmt.Sprintf("--scope=%s --datadir=%s --target=latest", c.scope, leader.dataDir)
	if calls[1] != want {
		t.Errorf("the successful call's arguments: %q, want %q", calls[1], want)
	}
	failedOn := ""
	for _, m := range c.m {
		if strings.Contains(calls[0], m.dataDir) {
			failedOn = m.name
		}
		if _, err := os.Stat(filepath.Join(m.dataDir, "made_by_custom_bootstrap")); err != nil {
			t.Errorf("%s: the cluster is not the command's: %v", m.name, err)
		}
	}
	if failedOn == "" || failedOn == leader.name {
		t.Errorf("the failed call was on %q, the leader is %s: want another member", failedOn, leader.name)
	}
	if ok, err := leader.writable(); err != nil || !ok {
		t.Errorf("the leader does not take writes: %v %v", ok, err)
	}
}
