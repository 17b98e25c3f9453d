//go:build linux

package callbacks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
)

// These tests run real shell scripts.

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// argvRecorder is a script writing its arguments, one per line, and the
// variables named in vars to out.
func argvRecorder(t *testing.T, dir, out string, vars ...string) string {
	t.Helper()
	body := ": > " + out + "\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> " + out + "; done\n"
	for _, v := range vars {
		body += "echo \"" + v + "=$" + v + "\" >> " + out + "\n"
	}
	return writeScript(t, dir, "record.sh", body)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// gone reports whether the process has ended: it does not exist, or is a
// zombie nobody reaped (a killed script's orphans are adopted by an init
// that may not reap them).
func gone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond) // polling a process's end
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if s := strings.TrimSpace(string(data)); err == nil && s != "" {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond) // polling for the script to write it
	}
}

func TestExecRunsTheScriptWithPatronisArguments(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "argv")
	script := argvRecorder(t, dir, out)
	e, err := NewExec(map[string]string{
		callback.ActionRoleChange: script + ` --flag "two words"`,
		callback.ActionStop:       "",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Empty() {
		t.Errorf("Empty() is true with a script")
	}
	ev := callback.Event{Action: callback.ActionRoleChange, Role: callback.RolePrimary, Scope: "demo", Member: "node1", Seq: 7}
	if err := e.Deliver(context.Background(), nil, ev); err != nil {
		t.Fatal(err)
	}
	want := []string{"--flag", "two words", "on_role_change", "primary", "demo"}
	if got := readLines(t, out); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("argv %q, want %q", got, want)
	}

	// An action without a script is delivered at once.
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{callback.ActionStop, callback.ActionStart} {
		if err := e.Deliver(context.Background(), nil, callback.Event{Action: action, Role: "replica", Scope: "demo"}); err != nil {
			t.Errorf("%s: %v", action, err)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a script ran for an action without one")
	}
}

func TestExecThroughTheDispatcher(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	script := writeScript(t, dir, "append.sh", "echo \"$1 $2 $3\" >> "+out+"\n")
	scripts := map[string]string{}
	for _, a := range Actions {
		scripts[a] = script
	}
	e, err := NewExec(scripts, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDispatcher(Options{Scope: "demo", Member: "node1"}, Sink{Name: "exec", Receiver: e, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.Emit(callback.ActionStart, callback.RoleReplica)
	d.Emit(callback.ActionRoleChange, callback.RolePrimary)
	d.Emit(callback.ActionReload, callback.RolePrimary)
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "on_start replica demo|on_role_change primary demo|on_reload primary demo"
	if got := strings.Join(readLines(t, out), "|"); got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if st := d.Status()[0]; st.Delivered != 3 || st.Failed != 0 {
		t.Errorf("status %+v", st)
	}
}

func TestNewExecRefusesBadScripts(t *testing.T) {
	for _, tc := range []struct {
		scripts map[string]string
		want    string
	}{
		{map[string]string{"on_strat": "/x"}, `unknown callback action "on_strat"`},
		{map[string]string{callback.ActionStart: `/x "unterminated`}, "on_start: splitting command"},
	} {
		if _, err := NewExec(tc.scripts, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.scripts, err, tc.want)
		}
	}
}

func TestRunReportsANonZeroExit(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "fail.sh", "echo starting\necho 'no VIP on eth9' >&2\nexit 3\n")
	res, err := Run(context.Background(), Command{Name: "on_start callback", Argv: []string{script}, Timeout: 10 * time.Second})
	var exitErr *ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("err %v (%T), want *ExitError", err, err)
	}
	if exitErr.ExitCode != 3 || res.ExitCode != 3 {
		t.Errorf("exit code %d / %d, want 3", exitErr.ExitCode, res.ExitCode)
	}
	for _, want := range []string{"on_start callback", "fail.sh", "exit status 3", "no VIP on eth9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if res.Tail != "starting\nno VIP on eth9" {
		t.Errorf("tail %q", res.Tail)
	}
}

func TestRunKillsTheProcessGroupAtTheTimeout(t *testing.T) {
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	// The script starts a child that would outlive it, then hangs.
	script := writeScript(t, dir, "hang.sh", "sleep 300 &\necho $! > "+pids+".child\necho $$ > "+pids+"\necho hanging\nsleep 300\n")
	start := time.Now()
	res, err := Run(context.Background(), Command{Name: "pre_promote", Argv: []string{script}, Timeout: 500 * time.Millisecond})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not finish within 500ms") {
		t.Fatalf("err %v, want the timeout", err)
	}
	if !strings.Contains(err.Error(), "hanging") {
		t.Errorf("error %q lacks the output", err)
	}
	if res.ExitCode != -1 {
		t.Errorf("exit code %d, want -1 (killed)", res.ExitCode)
	}
	// SIGTERM ends sh and sleep at once; the kill grace is not needed.
	if took > 3*time.Second {
		t.Errorf("Run returned after %v", took)
	}
	waitGone(t, readPid(t, pids))
	waitGone(t, readPid(t, pids+".child"))
}

func TestRunStopsWhenTheCallerGivesUp(t *testing.T) {
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	// The child ignores SIGTERM: the group's SIGKILL must end it.
	script := writeScript(t, dir, "stubborn.sh", "sh -c 'trap \"\" TERM; echo $$ > "+pids+".child; sleep 300' &\nsleep 300\n")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		readPid(t, pids+".child")
		cancel()
	}()
	_, err := Run(ctx, Command{Name: "before_stop", Argv: []string{script}, Timeout: time.Minute})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped before it finished") {
		t.Fatalf("err %v, want the caller's cancellation", err)
	}
	waitGone(t, readPid(t, pids+".child"))
}

func TestRunAMissingProgram(t *testing.T) {
	_, err := Run(context.Background(), Command{Name: "pre_promote", Argv: []string{"/nonexistent/custos-hook"}})
	if err == nil || !strings.Contains(err.Error(), "pre_promote") || !strings.Contains(err.Error(), "/nonexistent/custos-hook") {
		t.Errorf("err %v", err)
	}
}

func TestHooks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "argv")
	script := argvRecorder(t, dir, out, "PGPASSFILE", "PGOPTIONS", "CUSTOS_TEST_AGENT_ENV")
	t.Setenv("CUSTOS_TEST_AGENT_ENV", "kept")
	r, err := NewHookRunner(map[string]string{
		HookPrePromote:    script,
		HookPostBootstrap: script + " --first",
		HookBeforeStop:    "",
	}, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Configured(HookPrePromote) || r.Configured(HookBeforeStop) {
		t.Errorf("Configured wrong")
	}

	if err := r.PrePromote(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"PGPASSFILE=", "PGOPTIONS=", "CUSTOS_TEST_AGENT_ENV=kept"}
	if got := readLines(t, out); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("pre_promote: %q, want %q", got, want)
	}

	conn := "dbname=postgres user=postgres host=/tmp port=5432"
	if err := r.PostBootstrap(context.Background(), conn, "/var/lib/custos/pgpass"); err != nil {
		t.Fatal(err)
	}
	want = []string{"--first", conn, "PGPASSFILE=/var/lib/custos/pgpass", "PGOPTIONS=" + PostBootstrapPGOptions, "CUSTOS_TEST_AGENT_ENV=kept"}
	if got := readLines(t, out); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("post_bootstrap: %q, want %q", got, want)
	}

	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if err := r.BeforeStop(context.Background()); err != nil {
		t.Errorf("unconfigured before_stop: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unconfigured hook ran something")
	}
}

func TestHookTimeout(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "slow.sh", "sleep 300\n")
	r, err := NewHookRunner(map[string]string{HookPrePromote: script}, 300*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = r.PrePromote(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "pre_promote") {
		t.Errorf("err %v", err)
	}
}

func TestNewHookRunnerRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		commands map[string]string
		timeout  time.Duration
		want     string
	}{
		{map[string]string{"post_init": "/x"}, time.Second, `unknown hook "post_init"`},
		{map[string]string{HookBeforeStop: `'/x`}, time.Second, "before_stop: splitting command"},
		{nil, 0, "must be positive"},
	} {
		if _, err := NewHookRunner(tc.commands, tc.timeout, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.commands, err, tc.want)
		}
	}
}

func TestExecActsOncePerSeq(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	script := writeScript(t, dir, "append.sh", "echo \"$1\" >> "+out+"\n")
	e, err := NewExec(map[string]string{callback.ActionStart: script, callback.ActionStop: script}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := callback.Event{Action: callback.ActionStart, Role: "replica", Scope: "demo", Seq: 1}
	for range 2 {
		if err := e.Deliver(ctx, nil, ev); err != nil {
			t.Fatal(err)
		}
	}
	ev2 := callback.Event{Action: callback.ActionStop, Role: "replica", Scope: "demo", Seq: 2}
	if err := e.Deliver(ctx, []byte("{}"), ev2); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(readLines(t, out), "|"); got != "on_start|on_stop" {
		t.Errorf("runs %q: a redelivered Seq ran its script again", got)
	}

	// With its context ended, Deliver starts nothing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ev3 := callback.Event{Action: callback.ActionStop, Role: "replica", Scope: "demo", Seq: 3}
	if err := e.Deliver(cancelled, nil, ev3); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if got := len(readLines(t, out)); got != 2 {
		t.Errorf("%d runs after a cancelled delivery", got)
	}
}

func TestExecTakesNoSection(t *testing.T) {
	e, err := NewExec(map[string]string{callback.ActionStart: "", callback.ActionStop: " "}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Empty() {
		t.Errorf("Empty() is false without a script")
	}
	ctx := context.Background()
	for _, ok := range []string{"", "null", "{}", " {} "} {
		if err := e.Validate(ctx, []byte(ok)); err != nil {
			t.Errorf("Validate(%q): %v", ok, err)
		}
	}
	err = e.Validate(ctx, []byte(`{"url": "x", "b": 1}`))
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) || len(cfgErr.Problems) != 2 || cfgErr.Problems[0].Path != "b" || cfgErr.Problems[1].Path != "url" {
		t.Fatalf("Validate: %#v", err)
	}
	if err := e.Deliver(ctx, []byte(`{"url": "x"}`), callback.Event{Action: callback.ActionStart, Seq: 1}); !errors.As(err, &cfgErr) {
		t.Errorf("Deliver with a refused section: %v", err)
	}
	if err := e.Validate(ctx, []byte(`[1]`)); !errors.As(err, &cfgErr) {
		t.Errorf("Validate of a list: %v", err)
	}
}
