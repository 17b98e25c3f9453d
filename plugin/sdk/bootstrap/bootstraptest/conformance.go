package bootstraptest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/replica"
	"github.com/custos-ha/custos/plugin/sdk/replica/replicatest"
)

// Setup is one creator under test and what the kit needs to drive it.
// Each check asks for a new one.
type Setup struct {
	// Creator is the creator under test: the implementation itself, a
	// client of it over gRPC, or a plugin binary's (LaunchBinary).
	Creator bootstrap.Creator
	// Method is the bootstrap method exercised, one of those announced in
	// Capabilities.
	Method string
	// Capabilities are the ones the plugin announces in its identity.
	Capabilities map[string]string
	// Config is a valid section, a JSON table, with which CreateCluster
	// creates a cluster within two minutes.
	Config []byte
	// SlowConfig is a valid section with which CreateCluster takes at
	// least ten seconds, reporting progress and writing into the data
	// directory early on, for the cancellation check.
	SlowConfig []byte
	// FailConfig is a valid section with which CreateCluster fails (a
	// backup that does not exist, a source nobody listens on).
	FailConfig []byte
	// Target is a recovery target CreateCluster reaches with Config, its
	// Action promote or empty. It is required when Method is listed under
	// bootstrap.CapTargets, and unused otherwise.
	Target *bootstrap.Target
	// BinDir, when set, holds PostgreSQL's executables of the created
	// clusters' major version: the kit starts every cluster it creates and
	// requires it to come up as a primary. Empty leaves PostgreSQL out
	// (for a creator that writes placeholder files).
	BinDir string
	// Env is given to every request.
	Env map[string]string
}

// Timing bounds of the kit.
const (
	// createTimeout bounds a creation with Config.
	createTimeout = 2 * time.Minute
	// cancelLatency bounds the return of a cancelled creation: the tools
	// get SIGTERM, then SIGKILL, and the partial data is removed.
	cancelLatency = 15 * time.Second
	// quickTimeout bounds a call that should be refused before anything
	// starts.
	quickTimeout = 30 * time.Second
	// pollInterval paces every eventually-true check of the kit.
	pollInterval = 100 * time.Millisecond
)

// UnknownKey is the key the kit adds to Config to check that a section
// with a key the method does not know is refused, naming it.
const UnknownKey = "custos_conformance_unknown_key"

// noSuchMethod is a method no plugin serves.
const noSuchMethod = "custos-conformance-no-such-method"

// RunConformance runs the whole kit; newSetup returns a new creator, with
// what goes with it, for each check. Checks run in parallel, each into a
// data directory of its own.
func RunConformance(t *testing.T, newSetup func(t *testing.T) Setup) {
	k := &kit{newSetup: newSetup}
	t.Run("Identity", k.testIdentity)
	t.Run("Validate", k.testValidate)
	t.Run("CreateIntoAbsentDir", k.testCreateIntoAbsentDir)
	t.Run("CreateIntoEmptyDir", k.testCreateIntoEmptyDir)
	t.Run("Target", k.testTarget)
	t.Run("RefusesNonEmptyDir", k.testRefusesNonEmptyDir)
	t.Run("UnknownMethod", k.testUnknownMethod)
	t.Run("RefusedSection", k.testRefusedSection)
	t.Run("Failure", k.testFailure)
	t.Run("Cancel", k.testCancel)
	t.Run("EndedContext", k.testEndedContext)
}

type kit struct {
	newSetup func(t *testing.T) Setup
}

// setup returns a creator for a check, refusing an incomplete Setup.
func (k *kit) setup(t *testing.T) Setup {
	t.Helper()
	s := k.newSetup(t)
	if s.Creator == nil || s.Method == "" || s.Config == nil || s.SlowConfig == nil || s.FailConfig == nil {
		t.Fatal("bootstraptest: Setup.Creator, Method, Config, SlowConfig and FailConfig are required")
	}
	if s.takesTarget() {
		if s.Target == nil {
			t.Fatalf("bootstraptest: method %s is listed under %s: Setup.Target is required", s.Method, bootstrap.CapTargets)
		}
		if err := s.Target.Check(); err != nil {
			t.Fatalf("bootstraptest: Setup.Target: %v", err)
		}
		if a := s.Target.Action; a != "" && a != bootstrap.ActionPromote {
			t.Fatalf("bootstraptest: Setup.Target.Action is %q; the kit checks that the cluster comes up as a primary, so it must be %s or empty", a, bootstrap.ActionPromote)
		}
	}
	if s.BinDir != "" {
		replicatest.RequireBinaries(t, s.BinDir, "postgres", "pg_isready", "pg_controldata")
		if os.Geteuid() == 0 {
			t.Fatal("bootstraptest: PostgreSQL refuses to run as root: call replicatest.RunAsPostgres from TestMain")
		}
	}
	return s
}

// takesTarget reports whether the method restores to a recovery target.
func (s Setup) takesTarget() bool {
	return slices.Contains(bootstrap.TargetMethods(s.Capabilities), s.Method)
}

func (s Setup) request(dataDir string, config []byte) bootstrap.Request {
	return bootstrap.Request{
		Method:  s.Method,
		Scope:   "conformance",
		Member:  "member1",
		DataDir: dataDir,
		Config:  config,
		BinDir:  s.BinDir,
		Env:     s.Env,
	}
}

// recorder collects progress reports, checking each.
type recorder struct {
	t    *testing.T
	mu   sync.Mutex
	list []bootstrap.Progress
}

func (r *recorder) add(p bootstrap.Progress) {
	if p.Percent < bootstrap.PercentUnknown || p.Percent > 100 {
		r.t.Errorf("progress %q has percent %d, want 0..100 or PercentUnknown", p.Message, p.Percent)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, p)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.list)
}

// create runs one creation with a timeout and returns its progress,
// result and error.
func create(t *testing.T, s Setup, req bootstrap.Request, timeout time.Duration) (*recorder, bootstrap.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rec := &recorder{t: t}
	start := time.Now()
	res, err := s.Creator.CreateCluster(ctx, req, rec.add)
	if ctx.Err() != nil {
		t.Fatalf("CreateCluster did not finish within %s (err %v)", timeout, err)
	}
	t.Logf("CreateCluster took %s with %d progress reports: %v", time.Since(start).Round(time.Millisecond), rec.count(), err)
	return rec, res, err
}

// withUnknownKey returns config, a JSON table, with UnknownKey added.
func withUnknownKey(t *testing.T, config []byte) []byte {
	t.Helper()
	table := map[string]json.RawMessage{}
	if err := json.Unmarshal(config, &table); err != nil || table == nil {
		t.Fatalf("bootstraptest: Setup.Config must be a JSON table: %s", config)
	}
	table[UnknownKey] = json.RawMessage(`"x"`)
	out, err := json.Marshal(table)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// requireProblemAt checks that err is a *sdk.ConfigError with a problem
// at path ("" matches any).
func requireProblemAt(t *testing.T, what string, err error, path string) {
	t.Helper()
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("%s = %T %v, want a *sdk.ConfigError", what, err, err)
	}
	for _, p := range cfgErr.Problems {
		if path == "" || p.Path == path {
			return
		}
	}
	t.Fatalf("%s: no problem at key path %q in %v", what, path, cfgErr)
}

func (k *kit) testIdentity(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	methods := bootstrap.Methods(s.Capabilities)
	if !slices.Contains(methods, s.Method) {
		t.Errorf("capability %s=%q does not list method %q", bootstrap.CapMethods, s.Capabilities[bootstrap.CapMethods], s.Method)
	}
	for _, m := range bootstrap.TargetMethods(s.Capabilities) {
		if !slices.Contains(methods, m) {
			t.Errorf("capability %s lists %q, which %s does not", bootstrap.CapTargets, m, bootstrap.CapMethods)
		}
	}
}

func (k *kit) testValidate(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), quickTimeout)
	defer cancel()
	for name, cfg := range map[string][]byte{"Config": s.Config, "SlowConfig": s.SlowConfig, "FailConfig": s.FailConfig} {
		if err := s.Creator.Validate(ctx, s.Method, cfg); err != nil {
			t.Errorf("Validate(%s %s) = %v, want nil", name, cfg, err)
		}
	}
	requireProblemAt(t, "Validate of Config with an unknown key", s.Creator.Validate(ctx, s.Method, withUnknownKey(t, s.Config)), UnknownKey)
	requireProblemAt(t, "Validate of malformed JSON", s.Creator.Validate(ctx, s.Method, []byte(`{not json`)), "")
	requireProblemAt(t, "Validate of a list", s.Creator.Validate(ctx, s.Method, []byte(`["x"]`)), "")
	if err := s.Creator.Validate(ctx, noSuchMethod, s.Config); !errors.Is(err, bootstrap.ErrUnknownMethod) {
		t.Errorf("Validate of an unknown method = %v, want ErrUnknownMethod", err)
	}
}

func (k *kit) testCreateIntoAbsentDir(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	rec, res, err := create(t, s, s.request(dataDir, s.Config), createTimeout)
	if err != nil {
		t.Fatalf("CreateCluster into an absent directory: %v", err)
	}
	if rec.count() == 0 {
		t.Errorf("no progress reported during the creation")
	}
	requireCluster(t, s, dataDir, nil, res)
}

func (k *kit) testCreateIntoEmptyDir(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, res, err := create(t, s, s.request(dataDir, s.Config), createTimeout)
	if err != nil {
		t.Fatalf("CreateCluster into an empty directory: %v", err)
	}
	requireCluster(t, s, dataDir, nil, res)
}

// testTarget: a method listed under CapTargets creates a cluster that
// recovers to Setup.Target; any other refuses a target, touching nothing.
func (k *kit) testTarget(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	req := s.request(dataDir, s.Config)
	if s.takesTarget() {
		target := *s.Target
		req.Target = &target
		_, res, err := create(t, s, req, createTimeout)
		if err != nil {
			t.Fatalf("CreateCluster with target %+v: %v", target, err)
		}
		requireCluster(t, s, dataDir, &target, res)
		return
	}
	req.Target = &bootstrap.Target{Immediate: true}
	_, _, err := create(t, s, req, quickTimeout)
	if !errors.Is(err, bootstrap.ErrInvalidRequest) {
		t.Fatalf("CreateCluster with a target, by a method not listed under %s = %v, want ErrInvalidRequest", bootstrap.CapTargets, err)
	}
	requireAbsent(t, dataDir)
}

func (k *kit) testRefusesNonEmptyDir(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dataDir, "keep-me")
	writeFile(t, marker, "precious")
	_, _, err := create(t, s, s.request(dataDir, s.Config), quickTimeout)
	if !errors.Is(err, bootstrap.ErrDataDirNotEmpty) {
		t.Fatalf("CreateCluster into a non-empty directory = %v, want ErrDataDirNotEmpty", err)
	}
	requireOnly(t, dataDir, "keep-me")
	if b, err := os.ReadFile(marker); err != nil || string(b) != "precious" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}

	// A file where the directory should be is refused the same way.
	_, _, err = create(t, s, s.request(marker, s.Config), quickTimeout)
	if !errors.Is(err, bootstrap.ErrDataDirNotEmpty) {
		t.Fatalf("CreateCluster into a regular file = %v, want ErrDataDirNotEmpty", err)
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "precious" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}
}

func (k *kit) testUnknownMethod(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	req := s.request(dataDir, s.Config)
	req.Method = noSuchMethod
	_, _, err := create(t, s, req, quickTimeout)
	if !errors.Is(err, bootstrap.ErrUnknownMethod) {
		t.Fatalf("CreateCluster with an unknown method = %v, want ErrUnknownMethod", err)
	}
	requireAbsent(t, dataDir)
}

func (k *kit) testRefusedSection(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	_, _, err := create(t, s, s.request(dataDir, withUnknownKey(t, s.Config)), quickTimeout)
	requireProblemAt(t, "CreateCluster with an unknown key", err, UnknownKey)
	requireAbsent(t, dataDir)
}

// testFailure: a failed creation is an error of its own kind, and an
// existing empty directory is left existing and empty.
func (k *kit) testFailure(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, err := create(t, s, s.request(dataDir, s.FailConfig), createTimeout)
	var cfgErr *sdk.ConfigError
	switch {
	case err == nil:
		t.Fatal("CreateCluster with FailConfig = nil, want an error")
	case errors.As(err, &cfgErr), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, bootstrap.ErrDataDirNotEmpty), errors.Is(err, bootstrap.ErrUnknownMethod),
		errors.Is(err, bootstrap.ErrInvalidRequest), errors.Is(err, bootstrap.ErrInvalidResult):
		t.Errorf("CreateCluster with FailConfig = %v, want a failure, not a contract error", err)
	}
	requireOnly(t, dataDir)
	replicatest.RequireNoProcessMentions(t, dataDir)
}

func (k *kit) testCancel(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{t: t}
	result := make(chan error, 1)
	go func() {
		_, err := s.Creator.CreateCluster(ctx, s.request(dataDir, s.SlowConfig), rec.add)
		result <- err
	}()

	// Wait until the creation is under way: progress came and files landed.
	deadline := time.Now().Add(createTimeout)
	for {
		empty, _ := replica.Empty(dataDir)
		if rec.count() > 0 && !empty {
			break
		}
		select {
		case err := <-result:
			t.Fatalf("the slow creation ended before it could be cancelled (SlowConfig too fast?): %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the creation did not start within %s (progress %d)", createTimeout, rec.count())
		}
		time.Sleep(pollInterval)
	}

	cancelled := time.Now()
	cancel()
	select {
	case err := <-result:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled CreateCluster = %v, want an error matching context.Canceled", err)
		}
		t.Logf("cancelled creation returned after %s", time.Since(cancelled).Round(time.Millisecond))
	case <-time.After(cancelLatency):
		t.Fatalf("cancelled CreateCluster did not return within %s", cancelLatency)
	}
	requireAbsent(t, dataDir)
	replicatest.RequireNoProcessMentions(t, dataDir)
}

// testEndedContext: with its ctx already ended, CreateCluster starts
// nothing.
func (k *kit) testEndedContext(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := &recorder{t: t}
	_, err := s.Creator.CreateCluster(ctx, s.request(dataDir, s.Config), rec.add)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("CreateCluster with a cancelled ctx = %v, want an error matching context.Canceled", err)
	}
	if _, statErr := os.Lstat(dataDir); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("CreateCluster with a cancelled ctx created %s (%v)", dataDir, statErr)
	}
	if n := rec.count(); n > 0 {
		t.Errorf("CreateCluster with a cancelled ctx reported %d progress reports", n)
	}
}

// requireCluster checks a created cluster: a data directory without
// recovery configuration, a usable Result, and, with BinDir, a cluster
// that starts as the host starts it and comes up as a primary.
func requireCluster(t *testing.T, s Setup, dataDir string, target *bootstrap.Target, res bootstrap.Result) {
	t.Helper()
	requireDataDir(t, dataDir)
	if err := res.Check(); err != nil {
		t.Errorf("the Result is unusable: %v", err)
	}
	left, err := bootstrap.RecoveryConfig(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("the data directory holds recovery configuration (the host owns it; bootstrap.RemoveRecoveryConfig removes it): %q", left)
	}
	if s.BinDir != "" && !t.Failed() {
		StartCluster(t, s.BinDir, dataDir, bootstrap.RecoveryParameters(target, res))
	}
}

// requireDataDir checks that a new cluster looks like a PostgreSQL data
// directory.
func requireDataDir(t *testing.T, dataDir string) {
	t.Helper()
	for _, f := range []string{"PG_VERSION", "global/pg_control"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Errorf("the data directory lacks %s: %v", f, err)
		}
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 && perm != 0o750 {
		t.Errorf("data directory mode %o, PostgreSQL wants 0700 or 0750", perm)
	}
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

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
