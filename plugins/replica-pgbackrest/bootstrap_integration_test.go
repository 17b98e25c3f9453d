//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap/bootstraptest"
	"github.com/custos-ha/custos/plugin/sdk/replica"
	"github.com/custos-ha/custos/plugin/sdk/replica/replicatest"

	"github.com/custos-ha/custos/plugins/replica-pgbackrest/pgbackrest"
)

// TestPgbackrestBootstrap: a new cluster restored from the backup (in
// process and through the binary), started as the host starts it (the
// recovery target and the restore_command the plugin returned, in
// recovery.signal mode), ends its recovery at the target as a primary:
// with an immediate target it holds what the backup held and not what was
// written after it.
func TestPgbackrestBootstrap(t *testing.T) {
	p := startPrimary(t)
	creators := map[string]func(t *testing.T) bootstrap.Creator{
		"InProcess": func(*testing.T) bootstrap.Creator { return pgbackrest.NewBootstrapper(testLogger()) },
		"Binary": func(t *testing.T) bootstrap.Creator {
			id, c := bootstraptest.LaunchBinary(t, os.Getenv(binaryEnv))
			if !id.Serves(sdk.KindBootstrap) || !id.Serves(sdk.KindReplica) || id.Capabilities[bootstrap.CapTargets] != pgbackrest.Method {
				t.Fatalf("identity %s %v: want both kinds and the pgbackrest target method", id, id.Capabilities)
			}
			return c
		},
	}
	for name, newCreator := range creators {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newCreator(t)
			dataDir := filepath.Join(t.TempDir(), "data")
			target := &bootstrap.Target{Immediate: true}
			res, err := c.CreateCluster(context.Background(), bootstrap.Request{
				Method: pgbackrest.Method, Scope: "restored", Member: "node1", DataDir: dataDir,
				Config: section(p.restoreConfig(t), ""), BinDir: binDir, Target: target,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(res.RestoreCommand, "archive-get") {
				t.Errorf("restore_command %q: want pgBackRest's archive-get", res.RestoreCommand)
			}
			if left, err := bootstrap.RecoveryConfig(dataDir); err != nil || len(left) > 0 {
				t.Fatalf("recovery configuration left in the new cluster: %v %v", left, err)
			}
			var conf strings.Builder
			for k, v := range bootstrap.RecoveryParameters(target, res) {
				conf.WriteString(k + " = '" + strings.ReplaceAll(v, "'", "''") + "'\n")
			}
			appendFile(t, filepath.Join(dataDir, "postgresql.auto.conf"), conf.String())
			writeFile(t, filepath.Join(dataDir, "recovery.signal"), "")
			s := startStandby(t, dataDir)
			s.waitFor(t, "SELECT pg_is_in_recovery()", "f")
			s.waitFor(t, "SELECT count(*) FROM before_backup", "1000")
			s.waitFor(t, "SELECT count(*) FROM pg_tables WHERE tablename = 'after_backup'", "0")
		})
	}
}

// TestPgbackrestBootstrapConformance runs the bootstrap kind's conformance
// kit against the plugin, in process and through its built binary: every
// cluster it creates is started as the host starts it and must come up as
// a primary.
func TestPgbackrestBootstrapConformance(t *testing.T) {
	p := startPrimary(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for name, newCreator := range map[string]func(t *testing.T) bootstrap.Creator{
		"InProcess": func(*testing.T) bootstrap.Creator { return pgbackrest.NewBootstrapper(testLogger()) },
		"Binary": func(t *testing.T) bootstrap.Creator {
			_, c := bootstraptest.LaunchBinary(t, os.Getenv(binaryEnv))
			return c
		},
	} {
		t.Run(name, func(t *testing.T) {
			bootstraptest.RunConformance(t, func(t *testing.T) bootstraptest.Setup {
				conf := p.restoreConfig(t)
				ssh := filepath.Join(t.TempDir(), sshName)
				if err := os.Symlink(exe, ssh); err != nil {
					t.Fatal(err)
				}
				slow := fmt.Sprintf(`, "options": {"repo1-host": "repo.invalid", "repo1-host-user": "postgres", "repo1-host-config": %q, "cmd-ssh": %q}`, conf, ssh)
				return bootstraptest.Setup{
					Creator:      newCreator(t),
					Method:       pgbackrest.Method,
					Capabilities: pgbackrest.BootstrapCapabilities(),
					Config:       section(conf, ""),
					SlowConfig:   section(conf, slow),
					FailConfig:   []byte(fmt.Sprintf(`{"stanza": "no-such-stanza", "config": %q}`, conf)),
					Target:       &bootstrap.Target{Immediate: true},
					BinDir:       binDir,
					Env:          map[string]string{sshRateEnv: "65536"},
				}
			})
		})
	}
}

// TestPgbackrestReplicaConformance runs the replica kind's conformance kit
// against the plugin, in process and through its built binary, with the
// primary whose backup it restores as the source.
func TestPgbackrestReplicaConformance(t *testing.T) {
	p := startPrimary(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The slow section's ssh (this test binary) reads its rate from the
	// environment the plugin passes on.
	t.Setenv(sshRateEnv, "65536")
	conf := p.restoreConfig(t)
	ssh := filepath.Join(t.TempDir(), sshName)
	if err := os.Symlink(exe, ssh); err != nil {
		t.Fatal(err)
	}
	slow := fmt.Sprintf(`, "options": {"repo1-host": "repo.invalid", "repo1-host-user": "postgres", "repo1-host-config": %q, "cmd-ssh": %q}`, conf, ssh)
	target := replicatest.Target{
		New:          func(*testing.T) replica.Creator { return pgbackrest.New(testLogger()) },
		Method:       pgbackrest.Method,
		Source:       *p.request("", nil).Source,
		BinDir:       binDir,
		Config:       section(conf, ""),
		SlowConfig:   section(conf, slow),
		Capabilities: pgbackrest.Capabilities(),
	}
	t.Run("InProcess", func(t *testing.T) { replicatest.RunConformance(t, target) })
	t.Run("Binary", func(t *testing.T) {
		replicatest.RunConformance(t, replicatest.BinaryTarget(t, os.Getenv(binaryEnv), target))
	})
}
