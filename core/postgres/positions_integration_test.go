//go:build integration

package postgres

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/testkit/poll"
)

// GET /patroni's live positions never hold up the HA loop's connection
// and never hang: they run on a connection of their own, bounded by
// positionsTimeout, against a real server whose backends are frozen with
// SIGSTOP.
func TestIntegrationPositionsApartFromTheLoop(t *testing.T) {
	n := newNode(t, "pos")
	bootstrapPrimary(t, n)
	ctx := ctxT(t, time.Minute)

	// 1. The loop's connection is busy: positions are read all the same.
	loopDone := make(chan error, 1)
	go func() { loopDone <- n.p.Exec(ctx, "SELECT pg_sleep(3)") }()
	poll.Eventually(t, 10*time.Second, "the loop's statement runs", func() error {
		return errIfNot(strings.Contains(freshQuery(t, n, `SELECT string_agg(query, ';') FROM pg_stat_activity WHERE state = 'active'`), "pg_sleep(3)"))
	})

	if _, wal, _, _, err := n.p.Positions(ctx); err != nil || wal == 0 {
		t.Errorf("positions while the loop's connection is busy: wal %v, %v", wal, err)
	}
	select {
	case err := <-loopDone:
		t.Errorf("the loop's statement ended (%v) before positions were read: they waited for it", err)
	default:
		if err := <-loopDone; err != nil {
			t.Fatalf("the loop's statement: %v", err)
		}
	}

	// 2. The REST API's backend is frozen: a positions read gives up
	// within its bound, and the loop's connection serves meanwhile.
	apiPid := backendPid(t, n, "pg_is_in_recovery")
	stop(t, apiPid)
	posDone := make(chan error, 1)
	go func() {
		_, _, _, _, err := n.p.Positions(ctx)
		posDone <- err
	}()
	// Let the read reach the frozen backend; the loop's query below must
	// not wait for it.
	time.Sleep(100 * time.Millisecond)
	if err := n.p.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("the loop's connection while the REST API's backend is frozen: %v", err)
	}
	select {
	case err := <-posDone:
		t.Errorf("positions returned (%v) before the loop's query: the loop waited for them", err)
	default:
		if err := <-posDone; err == nil {
			t.Error("positions read from a frozen backend")
		}
	}
	cont(t, apiPid)
	poll.Eventually(t, 10*time.Second, "positions are read again", func() error {
		_, _, _, _, err := n.p.Positions(ctx)
		return err
	})

	// 3. The whole server is frozen: every read gives up, none hangs.
	pids := append([]int{n.p.Postmaster().Pid()}, children(t, n.p.Postmaster().Pid())...)
	for _, pid := range pids {
		stop(t, pid)
	}
	for range 3 {
		if _, _, _, _, err := n.p.Positions(ctx); err == nil {
			t.Error("positions read from a frozen server")
		}
	}
	for _, pid := range pids {
		cont(t, pid)
	}
	poll.Eventually(t, 10*time.Second, "positions are read after the thaw", func() error {
		_, _, _, _, err := n.p.Positions(ctx)
		return err
	})

}

func errIfNot(ok bool) error {
	if ok {
		return nil
	}
	return context.DeadlineExceeded
}

// freshQuery runs query on a connection of its own (the agent's may be
// busy) and returns the first column of the first row as text.
func freshQuery(t *testing.T, n *node, query string) string {
	t.Helper()
	cfg, err := n.p.localConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var out *string
	if err := conn.QueryRow(ctx, query).Scan(&out); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if out == nil {
		return ""
	}
	return *out
}

// backendPid finds the backend whose last query contains text.
func backendPid(t *testing.T, n *node, text string) int {
	t.Helper()
	out := sql(t, n, `SELECT pid FROM pg_stat_activity WHERE query LIKE '%`+text+`%' AND pid <> pg_backend_pid()`)
	pid, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("no backend ran %q: %q", text, out)
	}
	return pid
}

// children lists the processes whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after
		// its closing parenthesis.
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			out = append(out, child)
		}
	}
	if len(out) == 0 {
		t.Fatalf("the postmaster %d has no children", pid)
	}
	return out
}

func stop(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil && err != syscall.ESRCH { // a short-lived child may be gone
		t.Fatalf("SIGSTOP %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
}

func cont(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && err != syscall.ESRCH {
		t.Fatalf("SIGCONT %d: %v", pid, err)
	}
}
