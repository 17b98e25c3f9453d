package basebackup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// The test binary doubles as a fake pg_basebackup: linked into a bin dir
// under that name, it records its call and plays the script in fakeEnv.
const (
	fakeEnv   = "CUSTOS_FAKE_PG_BASEBACKUP" // script: comma-separated outcome per attempt: ok, fail
	fakeState = "CUSTOS_FAKE_STATE"         // directory for the call records
	fakeMajor = "CUSTOS_FAKE_MAJOR"         // major version --version reports
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "pg_basebackup" {
		os.Exit(fakePGBasebackup())
	}
	goleak.VerifyTestMain(m)
}

// call is what the fake recorded about one run.
type call struct {
	Args        []string `json:"args"`
	PassFile    string   `json:"passfile"`
	LCAll       string   `json:"lc_all"`
	Extra       string   `json:"extra"`
	EmptyTarget bool     `json:"empty_target"`
}

func fakePGBasebackup() int {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Printf("pg_basebackup (PostgreSQL) %s.3 (Debian)\n", os.Getenv(fakeMajor))
		return 0
	}
	state := os.Getenv(fakeState)
	entries, _ := os.ReadDir(state)
	attempt := len(entries)
	var pgdata string
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "--pgdata="); ok {
			pgdata = v
		}
	}
	empty, _ := replica.Empty(pgdata)
	c := call{Args: os.Args[1:], PassFile: os.Getenv("PGPASSFILE"), LCAll: os.Getenv("LC_ALL"), Extra: os.Getenv("EXTRA"), EmptyTarget: empty}
	b, _ := json.Marshal(c)
	_ = os.WriteFile(filepath.Join(state, fmt.Sprintf("call%d.json", attempt)), b, 0o600)

	script := strings.Split(os.Getenv(fakeEnv), ",")
	outcome := "fail"
	if attempt < len(script) {
		outcome = script[attempt]
	}
	fmt.Fprintln(os.Stderr, "pg_basebackup: initiating base backup, waiting for checkpoint to complete")
	_ = os.MkdirAll(filepath.Join(pgdata, "base"), 0o700)
	_ = os.WriteFile(filepath.Join(pgdata, "base", "partial"), []byte("x"), 0o600)
	fmt.Fprintln(os.Stderr, "    0/2048 kB (0%), 0/1 tablespace (...base/1/1255)")
	if outcome != "ok" {
		fmt.Fprintln(os.Stderr, `pg_basebackup: error: connection to server at "127.0.0.1", port 1 failed: Connection refused`)
		return 1
	}
	_ = os.WriteFile(filepath.Join(pgdata, "PG_VERSION"), []byte("15\n"), 0o600)
	fmt.Fprintln(os.Stderr, " 2048/2048 kB (100%), 1/1 tablespace")
	fmt.Fprintln(os.Stderr, "pg_basebackup: base backup completed")
	return 0
}

// fakeBinDir returns a bin dir whose pg_basebackup is this test binary,
// playing script, and the directory of its call records.
func fakeBinDir(t *testing.T, script string) (binDir, state string) {
	t.Helper()
	root := t.TempDir()
	binDir, state = filepath.Join(root, "bin"), filepath.Join(root, "state")
	for _, d := range []string{binDir, state} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(binDir, "pg_basebackup")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeEnv, script)
	t.Setenv(fakeState, state)
	t.Setenv(fakeMajor, "15")
	return binDir, state
}

func readCalls(t *testing.T, state string) []call {
	t.Helper()
	var out []call
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(state, fmt.Sprintf("call%d.json", i)))
		if errors.Is(err, os.ErrNotExist) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var c call
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func testRequest(binDir, dataDir string) replica.Request {
	return replica.Request{
		Method:  Method,
		Scope:   "demo",
		Member:  "node2",
		DataDir: dataDir,
		Source:  &replica.Source{Member: "node1", Host: "127.0.0.1", Port: 5432, DBName: "postgres", User: "replicator", PassFile: "/tmp/pgpass-test"},
		Role:    replica.RoleReplica,
		Config:  []byte(`["verbose", {"checkpoint": "fast"}]`),
		BinDir:  binDir,
		Env:     map[string]string{"EXTRA": "yes", "LC_ALL": "de_DE.UTF-8"},
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

func TestCreateReplicaRunsPGBasebackup(t *testing.T) {
	binDir, state := fakeBinDir(t, "ok")
	dataDir := filepath.Join(t.TempDir(), "data")
	var log progressLog
	if err := New(nil).CreateReplica(context.Background(), testRequest(binDir, dataDir), log.add); err != nil {
		t.Fatal(err)
	}
	calls := readCalls(t, state)
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	want := []string{"--pgdata=" + dataDir, "-X", "stream",
		"--dbname=host=127.0.0.1 port=5432 dbname=postgres user=replicator", "--progress", "--verbose", "--checkpoint=fast"}
	if !slices.Equal(calls[0].Args, want) {
		t.Errorf("args = %q\nwant   %q", calls[0].Args, want)
	}
	if calls[0].PassFile != "/tmp/pgpass-test" || calls[0].LCAll != "C" || calls[0].Extra != "yes" {
		t.Errorf("environment: %+v", calls[0])
	}
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
		t.Errorf("the copy is missing: %v", err)
	}
	var pcts []int
	var sawLine bool
	for _, p := range log.list {
		if p.Percent != replica.PercentUnknown {
			pcts = append(pcts, p.Percent)
		}
		sawLine = sawLine || strings.Contains(p.Message, "base backup completed")
	}
	if !slices.Equal(pcts, []int{0, 100}) || !sawLine {
		t.Errorf("progress = %+v", log.list)
	}
}

func TestCreateReplicaRetriesOnAFreshDirectory(t *testing.T) {
	binDir, state := fakeBinDir(t, "fail,ok")
	dataDir := filepath.Join(t.TempDir(), "data")
	c := New(nil)
	c.retryDelay = 10 * time.Millisecond
	var log progressLog
	if err := c.CreateReplica(context.Background(), testRequest(binDir, dataDir), log.add); err != nil {
		t.Fatal(err)
	}
	calls := readCalls(t, state)
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	if !calls[1].EmptyTarget {
		t.Errorf("the second attempt found the first one's partial copy")
	}
	var sawRetry bool
	for _, p := range log.list {
		sawRetry = sawRetry || strings.Contains(p.Message, "trying again")
	}
	if !sawRetry {
		t.Errorf("no retry reported in %+v", log.list)
	}
}

func TestCreateReplicaGivesUpAfterTwoAttempts(t *testing.T) {
	binDir, state := fakeBinDir(t, "fail,fail,ok")
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	c := New(nil)
	c.retryDelay = 10 * time.Millisecond
	err := c.CreateReplica(context.Background(), testRequest(binDir, dataDir), nil)
	if err == nil || !strings.Contains(err.Error(), "Connection refused") || !strings.Contains(err.Error(), "2 attempts") {
		t.Fatalf("err = %v, want the tool's last words after 2 attempts", err)
	}
	if n := len(readCalls(t, state)); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the partial copy is left: %v", err)
	}
}

func TestCreateReplicaCancelledDuringRetryDelay(t *testing.T) {
	binDir, _ := fakeBinDir(t, "fail,ok")
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := New(nil)
	c.retryDelay = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := c.CreateReplica(ctx, testRequest(binDir, dataDir), func(p replica.Progress) {
		if strings.Contains(p.Message, "trying again") {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if empty, _ := replica.Empty(dataDir); !empty {
		t.Errorf("the partial copy is left")
	}
	if _, err := os.Stat(dataDir); err != nil {
		t.Errorf("the existing directory was removed: %v", err)
	}
}

func TestCompressNeedsPG15(t *testing.T) {
	binDir, state := fakeBinDir(t, "ok")
	t.Setenv(fakeMajor, "14")
	req := testRequest(binDir, filepath.Join(t.TempDir(), "data"))
	req.Config = []byte(`{"compress": "server-gzip"}`)
	err := New(nil).CreateReplica(context.Background(), req, nil)
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) || cfgErr.Problems[0].Path != "compress" {
		t.Fatalf("err = %v, want a config error at compress", err)
	}
	if n := len(readCalls(t, state)); n != 0 {
		t.Errorf("pg_basebackup ran %d times", n)
	}

	t.Setenv(fakeMajor, "15")
	if err := New(nil).CreateReplica(context.Background(), req, nil); err != nil {
		t.Fatalf("server-gzip with pg_basebackup 15: %v", err)
	}
	if calls := readCalls(t, state); len(calls) != 1 || !slices.Contains(calls[0].Args, "--compress=server-gzip") {
		t.Errorf("calls = %+v", calls)
	}
}

// TestRefusals: requests refused before anything runs or is touched.
func TestRefusals(t *testing.T) {
	binDir, state := fakeBinDir(t, "ok")
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*replica.Request)
		want error
	}{
		{"unknown method", func(r *replica.Request) { r.Method = "pgbackrest" }, replica.ErrUnknownMethod},
		{"no source", func(r *replica.Request) { r.Source = nil }, replica.ErrNoSource},
		{"password in conn string", func(r *replica.Request) { r.Source.ConnString = "host=h password=x" }, replica.ErrInvalidRequest},
		{"other role", func(r *replica.Request) { r.Role = "primary" }, replica.ErrInvalidRequest},
		{"no data dir", func(r *replica.Request) { r.DataDir = "" }, replica.ErrInvalidRequest},
		{"non-empty data dir", func(r *replica.Request) { r.DataDir = nonEmpty }, replica.ErrDataDirNotEmpty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := testRequest(binDir, filepath.Join(t.TempDir(), "data"))
			tc.edit(&req)
			if err := New(nil).CreateReplica(context.Background(), req, nil); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	req := testRequest(binDir, filepath.Join(t.TempDir(), "data"))
	req.Config = []byte(`{"pgdata": "/elsewhere"}`)
	var cfgErr *sdk.ConfigError
	if err := New(nil).CreateReplica(context.Background(), req, nil); !errors.As(err, &cfgErr) {
		t.Errorf("forbidden option: err = %v, want a config error", err)
	}
	if n := len(readCalls(t, state)); n != 0 {
		t.Errorf("pg_basebackup ran %d times", n)
	}
	if entries, _ := os.ReadDir(nonEmpty); len(entries) != 1 {
		t.Errorf("the non-empty directory was touched: %d entries", len(entries))
	}
}

func TestValidate(t *testing.T) {
	c := New(nil)
	ctx := context.Background()
	if err := c.Validate(ctx, Method, []byte(`["verbose", {"max-rate": "100M"}]`)); err != nil {
		t.Errorf("valid section: %v", err)
	}
	if err := c.Validate(ctx, "pgbackrest", nil); !errors.Is(err, replica.ErrUnknownMethod) {
		t.Errorf("unknown method: %v", err)
	}
	err := c.Validate(ctx, Method, []byte(`{"custos_conformance_unknown_key": "x"}`))
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
	if caps[replica.CapNoLeader] != "false" {
		t.Errorf("no_leader = %q", caps[replica.CapNoLeader])
	}
}
