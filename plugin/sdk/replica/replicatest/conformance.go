package replicatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// Target describes the replica plugin under test and its source.
type Target struct {
	// New returns the creator under test: the implementation itself, or a
	// client of the plugin binary (LaunchBinary).
	New func(t *testing.T) replica.Creator
	// Method is the replica method exercised; it must be one of the
	// methods announced in Capabilities.
	Method string
	// Source is a running primary (StartPrimary), reachable with the
	// password in its PassFile.
	Source replica.Source
	// BinDir holds PostgreSQL's executables, of the source's major
	// version; the kit starts every copy it checks as a standby with them.
	BinDir string
	// Config is the method's section for a quick copy of Source.
	Config []byte
	// SlowConfig is a section with which a copy of Source takes at least
	// ten seconds (throttled), for the cancellation checks.
	SlowConfig []byte
	// Capabilities are the ones the plugin announces in its identity.
	Capabilities map[string]string
}

// Timing bounds of the kit.
const (
	// copyTimeout bounds a copy of the small test primary, retries
	// included.
	copyTimeout = 2 * time.Minute
	// badSourceTimeout bounds how long a copy from an unreachable source
	// may take to fail: a few quick attempts with pauses between them.
	badSourceTimeout = 45 * time.Second
	// cancelLatency bounds the return of a cancelled copy: the tool gets
	// SIGTERM, then SIGKILL, and the partial copy is removed.
	cancelLatency = 15 * time.Second
	// leftoverTimeout is how long processes of a cancelled copy may take
	// to disappear.
	leftoverTimeout = 5 * time.Second
	// streamTimeout bounds how long a started standby takes to stream
	// from the source.
	streamTimeout = 30 * time.Second
)

// unknownKey is a key no replica method knows.
const unknownKey = "custos_conformance_unknown_key"

// RunConformance runs the whole kit. Subtests run in parallel, each into a
// data directory of its own.
func RunConformance(t *testing.T, target Target) {
	if target.New == nil || target.Method == "" {
		t.Fatal("replicatest: Target.New and Target.Method are required")
	}
	if target.BinDir == "" {
		t.Fatal("replicatest: Target.BinDir is required (PostgreSQL's executables, e.g. " + DefaultBinDir + ")")
	}
	if target.SlowConfig == nil {
		t.Fatal("replicatest: Target.SlowConfig is required (a section that makes the copy last)")
	}
	RequireBinaries(t, target.BinDir, "postgres", "pg_isready", "pg_controldata")
	if os.Geteuid() == 0 {
		t.Fatal("replicatest: PostgreSQL refuses to run as root: call replicatest.RunAsPostgres from TestMain")
	}
	k := &kit{target: target}
	t.Run("Identity", k.testIdentity)
	t.Run("Validate", k.testValidate)
	t.Run("CopyIntoAbsentDirStreams", k.testCopyIntoAbsentDir)
	t.Run("CopyIntoEmptyDir", k.testCopyIntoEmptyDir)
	t.Run("RefusesNonEmptyDir", k.testRefusesNonEmptyDir)
	t.Run("BadSourceFails", k.testBadSource)
	t.Run("NoSource", k.testNoSource)
	t.Run("PasswordInConnString", k.testPasswordInConnString)
	t.Run("UnknownMethod", k.testUnknownMethod)
	t.Run("InvalidConfig", k.testInvalidConfig)
	t.Run("CancelDuringCopy", k.testCancel)
}

type kit struct {
	target Target
}

func (k *kit) request(dataDir string, config []byte) replica.Request {
	src := k.target.Source
	return replica.Request{
		Method:  k.target.Method,
		Scope:   "conformance",
		Member:  "replica1",
		DataDir: dataDir,
		Source:  &src,
		Role:    replica.RoleReplica,
		Config:  config,
		BinDir:  k.target.BinDir,
	}
}

// recorder collects progress reports.
type recorder struct {
	mu   sync.Mutex
	list []replica.Progress
}

func (r *recorder) add(p replica.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, p)
}

func (r *recorder) all() []replica.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// create runs one copy with a timeout and returns its progress, duration
// and error.
func (k *kit) create(t *testing.T, c replica.Creator, req replica.Request, timeout time.Duration) (*recorder, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rec := &recorder{}
	start := time.Now()
	err := c.CreateReplica(ctx, req, func(p replica.Progress) {
		if p.Percent < replica.PercentUnknown || p.Percent > 100 {
			t.Errorf("progress %q has percent %d, want 0..100 or PercentUnknown", p.Message, p.Percent)
		}
		rec.add(p)
	})
	if ctx.Err() != nil {
		t.Fatalf("CreateReplica did not finish within %s (err %v)", timeout, err)
	}
	return rec, time.Since(start), err
}

func (k *kit) testIdentity(t *testing.T) {
	t.Parallel()
	methods := replica.Methods(k.target.Capabilities)
	if !slices.Contains(methods, k.target.Method) {
		t.Errorf("capability %s=%q does not list method %q", replica.CapMethods, k.target.Capabilities[replica.CapMethods], k.target.Method)
	}
	if v, ok := k.target.Capabilities[replica.CapNoLeader]; ok {
		if _, err := strconv.ParseBool(v); err != nil {
			t.Errorf("capability %s=%q is not a boolean", replica.CapNoLeader, v)
		}
	}
}

func (k *kit) testValidate(t *testing.T) {
	t.Parallel()
	c := k.target.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, cfg := range map[string][]byte{"Config": k.target.Config, "SlowConfig": k.target.SlowConfig} {
		if err := c.Validate(ctx, k.target.Method, cfg); err != nil {
			t.Errorf("Validate(%s %s) = %v, want nil", name, cfg, err)
		}
	}
	bad := []byte(fmt.Sprintf(`{%q: "x"}`, unknownKey))
	err := c.Validate(ctx, k.target.Method, bad)
	requireProblemAt(t, err, unknownKey)
	if err := c.Validate(ctx, "custos-conformance-no-such-method", k.target.Config); !errors.Is(err, replica.ErrUnknownMethod) {
		t.Errorf("Validate of an unknown method = %v, want ErrUnknownMethod", err)
	}
	if err := c.Validate(ctx, k.target.Method, []byte(`{not json`)); err == nil {
		t.Errorf("Validate of malformed JSON = nil, want an error")
	}
}

// requireProblemAt checks that err is a *sdk.ConfigError with a problem at
// path.
func requireProblemAt(t *testing.T, err error, path string) {
	t.Helper()
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("want *sdk.ConfigError naming %q, got %T %v", path, err, err)
	}
	for _, p := range cfgErr.Problems {
		if p.Path == path {
			return
		}
	}
	t.Fatalf("no problem at key path %q in %v", path, cfgErr)
}

func (k *kit) testCopyIntoAbsentDir(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	rec, took, err := k.create(t, k.target.New(t), k.request(dataDir, k.target.Config), copyTimeout)
	if err != nil {
		t.Fatalf("CreateReplica into an absent directory: %v", err)
	}
	t.Logf("copy took %s with %d progress reports", took, len(rec.all()))
	if len(rec.all()) == 0 {
		t.Errorf("no progress reported during the copy")
	}
	requireDataDir(t, dataDir)
	k.requireStandby(t, dataDir)
}

func (k *kit) testCopyIntoEmptyDir(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, err := k.create(t, k.target.New(t), k.request(dataDir, k.target.Config), copyTimeout)
	if err != nil {
		t.Fatalf("CreateReplica into an empty directory: %v", err)
	}
	requireDataDir(t, dataDir)
}

func (k *kit) testRefusesNonEmptyDir(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dataDir, "keep-me")
	writeFile(t, marker, "precious", 0o600)
	_, _, err := k.create(t, k.target.New(t), k.request(dataDir, k.target.Config), copyTimeout)
	if !errors.Is(err, replica.ErrDataDirNotEmpty) {
		t.Fatalf("CreateReplica into a non-empty directory = %v, want ErrDataDirNotEmpty", err)
	}
	requireOnly(t, dataDir, "keep-me")
	if b, err := os.ReadFile(marker); err != nil || string(b) != "precious" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}
}

func (k *kit) testBadSource(t *testing.T) {
	t.Parallel()
	if noLeader, _ := strconv.ParseBool(k.target.Capabilities[replica.CapNoLeader]); noLeader {
		return // the method never contacts the source (a restore from a backup)
	}
	// An existing empty directory must be left existing and empty.
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	req := k.request(dataDir, k.target.Config)
	bad := k.target.Source
	bad.Port = FreePort(t) // nothing listens there
	bad.ConnString = ""
	req.Source = &bad
	_, took, err := k.create(t, k.target.New(t), req, badSourceTimeout)
	if err == nil {
		t.Fatalf("CreateReplica from a source nobody listens on succeeded")
	}
	if errors.Is(err, replica.ErrDataDirNotEmpty) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CreateReplica from a bad source = %v, want a copy failure", err)
	}
	t.Logf("bad source failed after %s: %v", took, err)
	requireOnly(t, dataDir)
}

func (k *kit) testNoSource(t *testing.T) {
	t.Parallel()
	if noLeader, _ := strconv.ParseBool(k.target.Capabilities[replica.CapNoLeader]); noLeader {
		return // the method works without a source; nothing to refuse
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	req := k.request(dataDir, k.target.Config)
	req.Source = nil
	_, _, err := k.create(t, k.target.New(t), req, copyTimeout)
	if !errors.Is(err, replica.ErrNoSource) {
		t.Fatalf("CreateReplica without a source = %v, want ErrNoSource", err)
	}
	requireAbsent(t, dataDir)
}

func (k *kit) testPasswordInConnString(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	req := k.request(dataDir, k.target.Config)
	src := k.target.Source
	src.ConnString = src.DSN() + " password=secret"
	req.Source = &src
	_, _, err := k.create(t, k.target.New(t), req, copyTimeout)
	if !errors.Is(err, replica.ErrInvalidRequest) {
		t.Fatalf("CreateReplica with a password in the connection string = %v, want ErrInvalidRequest", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
	requireAbsent(t, dataDir)
}

func (k *kit) testUnknownMethod(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	req := k.request(dataDir, k.target.Config)
	req.Method = "custos-conformance-no-such-method"
	_, _, err := k.create(t, k.target.New(t), req, copyTimeout)
	if !errors.Is(err, replica.ErrUnknownMethod) {
		t.Fatalf("CreateReplica with an unknown method = %v, want ErrUnknownMethod", err)
	}
	requireAbsent(t, dataDir)
}

func (k *kit) testInvalidConfig(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	req := k.request(dataDir, []byte(fmt.Sprintf(`{%q: "x"}`, unknownKey)))
	_, _, err := k.create(t, k.target.New(t), req, copyTimeout)
	requireProblemAt(t, err, unknownKey)
	requireAbsent(t, dataDir)
}

func (k *kit) testCancel(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	c := k.target.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	result := make(chan error, 1)
	go func() {
		result <- c.CreateReplica(ctx, k.request(dataDir, k.target.SlowConfig), rec.add)
	}()

	// Wait until the copy is under way: progress came and files landed.
	deadline := time.Now().Add(copyTimeout)
	for {
		empty, _ := replica.Empty(dataDir)
		if len(rec.all()) > 0 && !empty {
			break
		}
		select {
		case err := <-result:
			t.Fatalf("the slow copy ended before it could be cancelled (SlowConfig too fast?): %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy did not start within %s (progress %d)", copyTimeout, len(rec.all()))
		}
		time.Sleep(pollInterval)
	}

	cancelled := time.Now()
	cancel()
	select {
	case err := <-result:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled CreateReplica = %v, want an error matching context.Canceled", err)
		}
		t.Logf("cancelled copy returned after %s", time.Since(cancelled))
	case <-time.After(cancelLatency):
		t.Fatalf("cancelled CreateReplica did not return within %s", cancelLatency)
	}
	requireAbsent(t, dataDir)
	RequireNoProcessMentions(t, dataDir)
}

// requireDataDir checks that a copy looks like a PostgreSQL data directory.
func requireDataDir(t *testing.T, dataDir string) {
	t.Helper()
	for _, f := range []string{"PG_VERSION", "global/pg_control", "base", "pg_wal"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Errorf("the copy lacks %s: %v", f, err)
		}
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		t.Errorf("data directory mode %o, PostgreSQL wants 0700 or 0750", perm)
	}
}

// requireStandby starts the copy as a hot standby of the source and waits
// until it accepts read-only connections and streams WAL from the source.
func (k *kit) requireStandby(t *testing.T, dataDir string) {
	t.Helper()
	src := k.target.Source
	conninfo := src.DSN()
	if src.PassFile != "" {
		conninfo += " passfile=" + quoteConf(src.PassFile)
	}
	writeFile(t, filepath.Join(dataDir, "standby.signal"), "", 0o600)
	appendFile(t, filepath.Join(dataDir, "postgresql.auto.conf"),
		"\nprimary_conninfo = '"+strings.ReplaceAll(conninfo, "'", "''")+"'\n")
	port := FreePort(t)
	pm := StartPostmaster(t, k.target.BinDir, dataDir,
		"-c", "port="+strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "hot_standby=on",
		"-c", "lc_messages=C",
		"-c", "logging_collector=off")
	pm.WaitReady(t, port)
	deadline := time.Now().Add(streamTimeout)
	for !strings.Contains(pm.log.String(), "started streaming WAL from primary") {
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not stream from the source within %s:\n%s", streamTimeout, pm.log.String())
		}
		time.Sleep(pollInterval)
	}
	out, err := exec.Command(filepath.Join(k.target.BinDir, "pg_controldata"), "-D", dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("in archive recovery")) {
		t.Errorf("pg_controldata of the running standby does not say \"in archive recovery\":\n%s", out)
	}
}

// quoteConf quotes a libpq keyword value.
func quoteConf(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// requireOnly checks that dir exists and holds exactly the named entries.
func requireOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("the data directory should still exist: %v", err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Errorf("data directory holds %v, want %v", got, names)
	}
}

// requireAbsent checks that a data directory that did not exist before
// the call is absent (or at least empty) after it.
func requireAbsent(t *testing.T, dir string) {
	t.Helper()
	empty, err := replica.Empty(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !empty {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("data directory %s left with %v, want it absent or empty", dir, names)
	}
}
