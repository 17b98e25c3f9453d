//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
	"github.com/custos-ha/custos/plugin/sdk/replica/replicatest"

	"github.com/custos-ha/custos/plugins/replica-basebackup/basebackup"
)

// binaryEnv carries the path of the plugin binary built by the first
// (possibly root) run of TestMain to the run as postgres.
const binaryEnv = "CUSTOS_TEST_REPLICA_BASEBACKUP_BINARY"

// binDir holds the PostgreSQL 15 executables of Debian's postgresql-15.
const binDir = replicatest.DefaultBinDir

// Sections of the tests: a quick copy, and one throttled to last (the test
// primary is about 30 MB: at 1 MB/s the copy takes half a minute).
var (
	quickConfig = []byte(`["verbose", {"checkpoint": "fast"}]`)
	slowConfig  = []byte(`{"checkpoint": "fast", "max-rate": "1M"}`)
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv(binaryEnv) == "" {
		// Built before the tests step down to the postgres user, who has
		// no Go build cache.
		dir, err := os.MkdirTemp("", "custos-replica-basebackup-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		path := filepath.Join(dir, sdk.BinaryPrefix+"replica-basebackup")
		build := exec.Command("go", "build", "-o", path, ".")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building the plugin (go build .): %v\n", err)
			return 1
		}
		if err := os.Setenv(binaryEnv, path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := replicatest.RunAsPostgres(m)
	if code == 0 && os.Geteuid() != 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

func testLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "basebackup", Level: hclog.Warn, Output: os.Stderr})
}

func target(p *replicatest.Primary) replicatest.Target {
	return replicatest.Target{
		New:          func(*testing.T) replica.Creator { return basebackup.New(testLogger()) },
		Method:       basebackup.Method,
		Source:       p.Source(),
		BinDir:       binDir,
		Config:       quickConfig,
		SlowConfig:   slowConfig,
		Capabilities: basebackup.Capabilities(),
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	replicatest.RunConformance(t, target(replicatest.StartPrimary(t, binDir)))
}

func TestConformanceBinary(t *testing.T) {
	t.Parallel()
	p := replicatest.StartPrimary(t, binDir)
	replicatest.RunConformance(t, replicatest.BinaryTarget(t, os.Getenv(binaryEnv), target(p)))
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	id, _ := replicatest.LaunchBinary(t, os.Getenv(binaryEnv))
	if id.Name != basebackup.Method || !id.Serves(sdk.KindReplica) || id.Version == "" {
		t.Fatalf("identity %s", id)
	}
	if id.Capabilities[replica.CapMethods] != basebackup.Method || id.Capabilities[replica.CapNoLeader] != "false" {
		t.Errorf("capabilities %v", id.Capabilities)
	}
}

// TestServerSideCompression: PostgreSQL 15's server-side compression
// gives a normal data directory.
func TestServerSideCompression(t *testing.T) {
	t.Parallel()
	p := replicatest.StartPrimary(t, binDir)
	dataDir := filepath.Join(t.TempDir(), "data")
	src := p.Source()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := basebackup.New(testLogger()).CreateReplica(ctx, replica.Request{
		Method: basebackup.Method, DataDir: dataDir, Source: &src, Role: replica.RoleReplica, BinDir: binDir,
		Config: []byte(`{"checkpoint": "fast", "compress": "server-gzip:1"}`),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil || strings.TrimSpace(string(b)) != "15" {
		t.Errorf("PG_VERSION = %q, %v", b, err)
	}
}

// TestReplicationSlot: options reach pg_basebackup (a permanent slot is
// created on the primary).
func TestReplicationSlot(t *testing.T) {
	t.Parallel()
	p := replicatest.StartPrimary(t, binDir)
	dataDir := filepath.Join(t.TempDir(), "data")
	src := p.Source()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := basebackup.New(testLogger()).CreateReplica(ctx, replica.Request{
		Method: basebackup.Method, DataDir: dataDir, Source: &src, Role: replica.RoleReplica, BinDir: binDir,
		Config: []byte(`["create-slot", {"slot": "node2"}, {"checkpoint": "fast"}]`),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Psql(ctx, "SELECT slot_name FROM pg_replication_slots")
	if err != nil {
		t.Fatal(err)
	}
	if out != "node2" {
		t.Errorf("slots on the primary: %q, want node2", out)
	}
}
