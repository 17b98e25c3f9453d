package pgbackrest

import (
	"context"
	"encoding/json"
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

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// The test binary doubles as a fake pgbackrest: run under that name it
// records its call and plays the outcome in fakeEnv, printing what
// pgBackRest 2.45 prints. The integration tests run the real one.
const (
	fakeEnv   = "CUSTOS_FAKE_PGBACKREST" // ok, nostanza, nobackup, hang, silent-ok
	fakeState = "CUSTOS_FAKE_STATE"      // directory for the call record
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "pgbackrest" {
		os.Exit(fakePgbackrest())
	}
	goleak.VerifyTestMain(m)
}

// call is what the fake recorded about its run.
type call struct {
	Args  []string `json:"args"`
	Extra string   `json:"extra"`
	Pid   int      `json:"pid"`
	// Found lists the data directory's entries when the fake started.
	Found []string `json:"found"`
}

func fakePgbackrest() int {
	var pgdata string
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "--pg1-path="); ok {
			pgdata = v
		}
	}
	c := call{Args: os.Args[1:], Extra: os.Getenv("EXTRA"), Pid: os.Getpid()}
	entries, _ := os.ReadDir(pgdata)
	for _, e := range entries {
		c.Found = append(c.Found, e.Name())
	}
	b, _ := json.Marshal(c)
	_ = os.WriteFile(filepath.Join(os.Getenv(fakeState), "call.json"), b, 0o600)

	ts := "2026-12-08 00:36:40.531"
	fmt.Printf("%s P00   INFO: restore command begin 2.45: %s\n", ts, strings.Join(os.Args[1:], " "))
	switch os.Getenv(fakeEnv) {
	case "nostanza":
		fmt.Printf("%s P00   WARN: repo1: [FileMissingError] unable to load info file '/r/backup/main/backup.info' or '/r/backup/main/backup.info.copy':\n", ts)
		fmt.Println("                                    FileMissingError: unable to open missing file '/r/backup/main/backup.info' for read")
		fmt.Println("                                    HINT: has a stanza-create been performed?")
		fmt.Printf("%s P00  ERROR: [075]: no backup set found to restore\n", ts)
		return 75
	case "nobackup":
		fmt.Printf("%s P00  ERROR: [075]: no backup set found to restore\n", ts)
		return 75
	}
	_ = os.MkdirAll(filepath.Join(pgdata, "base", "1"), 0o700)
	_ = os.MkdirAll(filepath.Join(pgdata, "global"), 0o700)
	for i, f := range []string{"PG_VERSION", "base/1/1255", "base/1/1259"} {
		_ = os.WriteFile(filepath.Join(pgdata, f), []byte("15\n"), 0o600)
		fmt.Printf("%s P01 DETAIL: restore file %s/%s (8KB, %d.%02d%%) checksum 0123\n", ts, pgdata, f, (i+1)*30, i)
	}
	switch os.Getenv(fakeEnv) {
	case "hang":
		time.Sleep(time.Hour) // until the test cancels the restore
		return 1
	case "silent-ok":
		return 0 // no global/pg_control: nonsense success
	}
	_ = os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), []byte("x"), 0o600)
	fmt.Printf("%s P00   INFO: restore global/pg_control (performed last to ensure aborted restores cannot be started)\n", ts)
	fmt.Printf("%s P00   INFO: restore command end: completed successfully (12ms)\n", ts)
	return 0
}

// fakeCommand returns the path of a pgbackrest that is this test binary,
// playing outcome, and the directory of its call record.
func fakeCommand(t *testing.T, outcome string) (command, state string) {
	t.Helper()
	root := t.TempDir()
	state = filepath.Join(root, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	command = filepath.Join(root, "pgbackrest")
	if err := os.Symlink(exe, command); err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeEnv, outcome)
	t.Setenv(fakeState, state)
	return command, state
}

func readCall(t *testing.T, state string) (call, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "call.json"))
	if errors.Is(err, os.ErrNotExist) {
		return call{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var c call
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c, true
}

func testRequest(command, dataDir string) replica.Request {
	return replica.Request{
		Method:  Method,
		Scope:   "demo",
		Member:  "node2",
		DataDir: dataDir,
		Role:    replica.RoleReplica,
		Config:  []byte(fmt.Sprintf(`{"stanza": "main", "command": %q, "repo_path": "/r", "options": {"link-all": true}}`, command)),
		Env:     map[string]string{"EXTRA": "yes"},
	}
}

// progressLog collects progress reports.
type progressLog struct {
	mu   sync.Mutex
	list []replica.Progress
}

func (p *progressLog) add(r replica.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, r)
}

func (p *progressLog) percents() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, r := range p.list {
		if r.Percent != replica.PercentUnknown {
			out = append(out, r.Percent)
		}
	}
	return out
}

func TestCreateReplicaRestoresAStandby(t *testing.T) {
	command, state := fakeCommand(t, "ok")
	dataDir := filepath.Join(t.TempDir(), "data")
	var log progressLog
	if err := New(nil).CreateReplica(context.Background(), testRequest(command, dataDir), log.add); err != nil {
		t.Fatal(err)
	}
	c, ok := readCall(t, state)
	if !ok {
		t.Fatal("pgbackrest did not run")
	}
	want := []string{"--stanza=main", "--pg1-path=" + dataDir, "--repo1-path=/r", "--type=standby",
		"--log-level-console=detail", "--log-level-stderr=off", "--link-all", "restore"}
	if !slices.Equal(c.Args, want) {
		t.Errorf("args = %q\nwant   %q", c.Args, want)
	}
	if c.Extra != "yes" {
		t.Errorf("the request's environment did not reach pgbackrest")
	}
	if len(c.Found) != 0 {
		t.Errorf("pgbackrest found %v in the data directory, want it empty", c.Found)
	}
	if got := log.percents(); !slices.Equal(got, []int{30, 60, 90, 100}) {
		t.Errorf("percents = %v, want 30 60 90 100", got)
	}
	st, err := os.Stat(dataDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v", st, err)
	}
}

func TestCreateReplicaKeepData(t *testing.T) {
	command, state := fakeCommand(t, "ok")
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	req := testRequest(command, dataDir)

	// Without KeepData, an old copy is refused and left alone.
	if err := New(nil).CreateReplica(context.Background(), req, nil); !errors.Is(err, replica.ErrDataDirNotEmpty) {
		t.Fatalf("err = %v, want ErrDataDirNotEmpty", err)
	}
	if _, ran := readCall(t, state); ran {
		t.Fatal("pgbackrest ran on a directory it was not given")
	}

	// PostgreSQL may be running: refused, untouched.
	pid := filepath.Join(dataDir, "postmaster.pid")
	if err := os.WriteFile(pid, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	req.KeepData = true
	if err := New(nil).CreateReplica(context.Background(), req, nil); !errors.Is(err, replica.ErrInvalidRequest) || !strings.Contains(err.Error(), "postmaster.pid") {
		t.Fatalf("err = %v, want ErrInvalidRequest naming postmaster.pid", err)
	}
	if _, ran := readCall(t, state); ran {
		t.Fatal("pgbackrest ran while postmaster.pid was there")
	}
	if err := os.Remove(pid); err != nil {
		t.Fatal(err)
	}

	if err := New(nil).CreateReplica(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	c, _ := readCall(t, state)
	if !slices.Contains(c.Args, "--delta") || !slices.Equal(c.Found, []string{"PG_VERSION"}) {
		t.Errorf("args %q, found %v: want --delta over the old copy", c.Args, c.Found)
	}
}

func TestCreateReplicaKeepDataOnEmptyDirHasNoDelta(t *testing.T) {
	command, state := fakeCommand(t, "ok")
	req := testRequest(command, filepath.Join(t.TempDir(), "data"))
	req.KeepData = true
	if err := New(nil).CreateReplica(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	if c, _ := readCall(t, state); slices.Contains(c.Args, "--delta") {
		t.Errorf("args %q: --delta into an empty directory", c.Args)
	}
}

func TestCreateReplicaFailures(t *testing.T) {
	for _, tc := range []struct {
		outcome string
		keep    bool
		want    []string
		is      error
	}{
		{"nostanza", false, []string{`stanza "main" does not exist in repository repo1 at /r`}, ErrStanzaNotFound},
		{"nobackup", false, []string{`no backup of stanza "main" to restore in repository repo1 at /r`}, ErrNoBackup},
		{"silent-ok", false, []string{"reported success", "global/pg_control"}, nil},
		{"nobackup", true, []string{`no backup of stanza "main"`}, ErrNoBackup},
	} {
		t.Run(fmt.Sprintf("%s keep=%v", tc.outcome, tc.keep), func(t *testing.T) {
			command, _ := fakeCommand(t, tc.outcome)
			dataDir := t.TempDir()
			req := testRequest(command, dataDir)
			if tc.keep {
				req.KeepData = true
				if err := os.WriteFile(filepath.Join(dataDir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg := map[string]any{}
			if err := json.Unmarshal(req.Config, &cfg); err != nil {
				t.Fatal(err)
			}
			// The repository path exists: the stanza is what is missing.
			repo := t.TempDir()
			cfg["repo_path"] = repo
			req.Config, _ = json.Marshal(cfg)
			for i, w := range tc.want {
				tc.want[i] = strings.ReplaceAll(w, " at /r", " at "+repo)
			}
			err := New(nil).CreateReplica(context.Background(), req, nil)
			if err == nil {
				t.Fatal("the restore succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant it to mention %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.is)
			}
			if empty, _ := replica.Empty(dataDir); !empty {
				t.Errorf("the partial restore is left")
			}
			if _, err := os.Stat(dataDir); err != nil {
				t.Errorf("the existing directory was removed: %v", err)
			}
		})
	}
}

func TestCreateReplicaFailureRemovesACreatedDirectory(t *testing.T) {
	command, _ := fakeCommand(t, "silent-ok")
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := New(nil).CreateReplica(context.Background(), testRequest(command, dataDir), nil); err == nil {
		t.Fatal("the restore succeeded")
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory the plugin created is left: %v", err)
	}
}

func TestCreateReplicaCancelled(t *testing.T) {
	command, state := fakeCommand(t, "hang")
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := New(nil).CreateReplica(ctx, testRequest(command, dataDir), func(p replica.Progress) {
		if p.Percent == 90 {
			cancel() // the fake has written its files and now hangs
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial restore is left: %v", err)
	}
	c, _ := readCall(t, state)
	if _, err := os.Stat("/proc/" + strconv.Itoa(c.Pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pgbackrest (pid %d) still runs: %v", c.Pid, err)
	}
}

func TestCreateReplicaMissingCommand(t *testing.T) {
	req := testRequest(filepath.Join(t.TempDir(), "no-pgbackrest"), filepath.Join(t.TempDir(), "data"))
	err := New(nil).CreateReplica(context.Background(), req, nil)
	if err == nil || !strings.Contains(err.Error(), "not found (install pgBackRest") {
		t.Fatalf("err = %v, want it to say pgbackrest is missing", err)
	}
	if _, err := os.Stat(req.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory is left: %v", err)
	}
}

// TestRefusals: requests refused before anything runs or is touched.
func TestRefusals(t *testing.T) {
	command, state := fakeCommand(t, "ok")
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*replica.Request)
		want error
	}{
		{"unknown method", func(r *replica.Request) { r.Method = "basebackup" }, replica.ErrUnknownMethod},
		{"password in conn string", func(r *replica.Request) {
			r.Source = &replica.Source{Member: "node1", ConnString: "host=h password=x"}
		}, replica.ErrInvalidRequest},
		{"other role", func(r *replica.Request) { r.Role = "primary" }, replica.ErrInvalidRequest},
		{"no data dir", func(r *replica.Request) { r.DataDir = "" }, replica.ErrInvalidRequest},
		{"non-empty data dir", func(r *replica.Request) { r.DataDir = nonEmpty }, replica.ErrDataDirNotEmpty},
		{"a file as data dir with keep_data", func(r *replica.Request) {
			r.DataDir, r.KeepData = filepath.Join(nonEmpty, "keep"), true
		}, replica.ErrDataDirNotEmpty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := testRequest(command, filepath.Join(t.TempDir(), "data"))
			tc.edit(&req)
			if err := New(nil).CreateReplica(context.Background(), req, nil); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	req := testRequest(command, filepath.Join(t.TempDir(), "data"))
	req.Config = []byte(`{"stanza": "main", "options": {"pg1-path": "/elsewhere"}}`)
	var cfgErr *sdk.ConfigError
	if err := New(nil).CreateReplica(context.Background(), req, nil); !errors.As(err, &cfgErr) {
		t.Errorf("forbidden option: err = %v, want a config error", err)
	}
	if _, ran := readCall(t, state); ran {
		t.Errorf("pgbackrest ran")
	}
	if entries, _ := os.ReadDir(nonEmpty); len(entries) != 1 {
		t.Errorf("the non-empty directory was touched: %d entries", len(entries))
	}
}

func TestCreateReplicaWithoutSource(t *testing.T) {
	command, _ := fakeCommand(t, "ok")
	req := testRequest(command, filepath.Join(t.TempDir(), "data"))
	req.Source = nil
	if err := New(nil).CreateReplica(context.Background(), req, nil); err != nil {
		t.Fatalf("a restore needs no source: %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := New(nil)
	ctx := context.Background()
	if err := c.Validate(ctx, Method, []byte(`{"stanza": "main", "process_max": 2}`)); err != nil {
		t.Errorf("valid section: %v", err)
	}
	if err := c.Validate(ctx, "basebackup", nil); !errors.Is(err, replica.ErrUnknownMethod) {
		t.Errorf("unknown method: %v", err)
	}
	err := c.Validate(ctx, Method, []byte(`{"stanza": "main", "custos_conformance_unknown_key": "x"}`))
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) || cfgErr.Problems[0].Path != "custos_conformance_unknown_key" {
		t.Errorf("unknown key: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	caps := Capabilities()
	if got := replica.Methods(caps); !slices.Equal(got, []string{Method}) {
		t.Errorf("methods = %q", got)
	}
	if caps[replica.CapNoLeader] != "true" || caps[replica.CapKeepData] != "true" {
		t.Errorf("capabilities = %v", caps)
	}
}

// exitError returns the *exec.ExitError of a process that exited with
// code.
func exitError(t *testing.T, code int) error {
	t.Helper()
	err := exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(code)).Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("sh -c 'exit %d' = %v", code, err)
	}
	return fmt.Errorf("pgbackrest: %w", err)
}
