//go:build integration

package bootstraptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/replica"
	"github.com/custos-ha/custos/plugin/sdk/replica/replicatest"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
)

// binaryEnv carries the path of the test plugin binary built by the first
// (possibly root) run of TestMain to the run as postgres.
const binaryEnv = "CUSTOS_TEST_BOOTSTRAP_REFERENCE_BINARY"

// binDir holds the PostgreSQL 15 executables of Debian's postgresql-15.
const binDir = replicatest.DefaultBinDir

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if os.Getenv(binaryEnv) == "" {
		// Built before the tests step down to the postgres user, who has
		// no Go build cache.
		dir, err := os.MkdirTemp("", "custos-bootstrap-reference-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		path := filepath.Join(dir, sdk.BinaryPrefix+"bootstrap-reference")
		build := exec.Command("go", "build", "-o", path, "./testdata/refplugin")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building the test plugin (go build ./testdata/refplugin): %v\n", err)
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

// cloneSetup drives MethodClone against a running primary: the clone
// starts as a primary of its own.
func cloneSetup(t *testing.T, p *replicatest.Primary, c bootstrap.Creator) Setup {
	section := func(extra string) []byte {
		return fmt.Appendf(nil, `{"host": "127.0.0.1", "port": %d, "user": %q, "dbname": "postgres", "passfile": %q%s}`,
			p.Port, p.Source().User, p.PassFile, extra)
	}
	// The test primary is about 30 MB: at 1 MB/s the clone takes half a
	// minute.
	slow := section(`, "max_rate": "1M"`)
	fail := fmt.Appendf(nil, `{"host": "127.0.0.1", "port": %d, "user": "nobody"}`, replicatest.FreePort(t))
	return Setup{
		Creator:      c,
		Method:       MethodClone,
		Capabilities: ReferenceCapabilities(),
		Config:       section(`, "restore_command": "cp /nonexistent-archive/%f %p"`),
		SlowConfig:   slow,
		FailConfig:   fail,
		BinDir:       binDir,
	}
}

func TestCloneConformance(t *testing.T) {
	t.Parallel()
	p := replicatest.StartPrimary(t, binDir)
	RunConformance(t, func(t *testing.T) Setup { return cloneSetup(t, p, NewReference()) })
}

// TestBinaryConformance runs the kit through the built test plugin, over
// a real handshake, a process per check.
func TestBinaryConformance(t *testing.T) {
	t.Parallel()
	path := os.Getenv(binaryEnv)
	RunConformance(t, BinarySetup(path, func(*testing.T) Setup { return fakeSetup(nil) }))
}

func TestBinaryCloneConformance(t *testing.T) {
	t.Parallel()
	p := replicatest.StartPrimary(t, binDir)
	path := os.Getenv(binaryEnv)
	RunConformance(t, BinarySetup(path, func(t *testing.T) Setup { return cloneSetup(t, p, nil) }))
}

// TestBinaryServesBothKinds: one binary serves the replica and the
// bootstrap kinds, each dispensed on its own.
func TestBinaryServesBothKinds(t *testing.T) {
	t.Parallel()
	path := os.Getenv(binaryEnv)
	id, c := LaunchBinary(t, path)
	if !id.Serves(sdk.KindBootstrap) || !id.Serves(sdk.KindReplica) || id.Capabilities[bootstrap.CapMethods] != "fake,clone" {
		t.Errorf("identity %s %v", id, id.Capabilities)
	}
	if err := c.Validate(context.Background(), MethodFake, []byte(`{}`)); err != nil {
		t.Errorf("bootstrap Validate: %v", err)
	}
	_, svc := sdktest.Launch(t, path, sdk.KindReplica, replica.PluginName, &replica.Plugin{})
	if err := svc.(replica.Creator).Validate(context.Background(), MethodFake, nil); !errors.Is(err, replica.ErrUnknownMethod) {
		t.Errorf("replica Validate = %v, want ErrUnknownMethod", err)
	}
}

// TestStartClusterRecoversToTarget: a clone started with a target and a
// restore_command, as the host starts a restored cluster, recovers to the
// target and promotes onto a new timeline.
func TestStartClusterRecoversToTarget(t *testing.T) {
	t.Parallel()
	p := replicatest.StartPrimary(t, binDir)
	s := cloneSetup(t, p, NewReference())
	dataDir := filepath.Join(t.TempDir(), "data")
	_, res, err := create(t, s, s.request(dataDir, s.Config), createTimeout)
	if err != nil {
		t.Fatal(err)
	}
	params := bootstrap.RecoveryParameters(&bootstrap.Target{Immediate: true}, res)
	c := StartCluster(t, binDir, dataDir, params)
	psql := func(sql string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
			"-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "-d", "postgres", "-c", sql)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql -c %q: %v\n%s", sql, err, out)
		}
		return string(bytes.TrimSpace(out))
	}
	// The new primary writes WAL on timeline 2 and takes writes.
	if got := psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"); got != "00000002" {
		t.Errorf("the promoted clone writes WAL on timeline %s, want 00000002", got)
	}
	psql("CREATE TABLE after_promotion (x int)")
	log := c.Postmaster.Log()
	for _, want := range []string{"starting point-in-time recovery to earliest consistent point", "selected new timeline ID: 2"} {
		if !bytes.Contains([]byte(log), []byte(want)) {
			t.Errorf("the server log lacks %q:\n%s", want, log)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "recovery.signal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("recovery.signal is still there after promotion: %v", err)
	}
}
