//go:build integration

package main

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/reaper"
	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

var (
	shortRuns      = flag.Int("chaos.runs", 1, "runs per scenario")
	shortScenarios = flag.String("chaos.scenarios", "", "comma-separated scenarios (default: the short form's: kill-node, primary-cut-from-dcs, sigstop-agent)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Orphans of killed agents are adopted by the test binary, which
	// reaps them (see main).
	stopReaper := reaper.Start(nil)
	code := m.Run()
	stopReaper()
	os.Exit(code)
}

// TestChaosShort is the short form of make chaos: each scenario of the
// short form once (-chaos.scenarios and -chaos.runs choose others). Every
// run must keep every acknowledged commit, converge, and, with the
// watchdog on, never have two members take writes at once.
func TestChaosShort(t *testing.T) {
	list, err := pickScenarios(*shortScenarios, true)
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd not found: install etcd-server (apt-get install etcd-server)")
	}
	// The agents may run as postgres: the binaries' directory is theirs
	// to read.
	root, err := os.MkdirTemp("", "custos-chaos-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin")
	if err := tkcluster.Build(bin, map[string]string{
		"custos":                            tkcluster.Custos,
		tkcluster.PluginBinary("dcs-etcd3"): tkcluster.Plugin("dcs-etcd3"),
		tkcluster.PluginBinary("replica-basebackup"): tkcluster.Plugin("replica-basebackup"),
	}); err != nil {
		t.Fatal(err)
	}
	e, err := newEnv(bin, defaultPgBinDir(), etcd, "", false, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)

	sums := runScenarios(context.Background(), e, list, *shortRuns)
	var table strings.Builder
	writeTable(&table, sums)
	writeDetails(&table, sums)
	t.Logf("\n%s", table.String())
	for _, s := range sums {
		r := s.row()
		switch {
		case s.err != nil:
			t.Errorf("%s: %v", s.sc.name, s.err)
		case r.failed > 0:
			t.Errorf("%s: %d of %d runs failed", s.sc.name, r.failed, r.runs)
		}
		if r.lost > 0 {
			t.Errorf("%s: %d acknowledged commits lost", s.sc.name, r.lost)
		}
		if s.sc.keepsLeader && r.changes+r.outages > 0 {
			t.Errorf("%s: the leadership changed hands %d times, and writes stopped %d times", s.sc.name, r.changes, r.outages)
		}
		if !s.sc.noWatchdog && r.windows > 0 {
			t.Errorf("%s: %d windows in which two members took writes (%v in all)", s.sc.name, r.windows, r.windowTotal)
		}
	}
}
