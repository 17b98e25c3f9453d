//go:build integration

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
	"github.com/custos-ha/custos/plugin/sdk/replica/replicatest"

	"github.com/custos-ha/custos/plugins/replica-pgbackrest/pgbackrest"
)

// These tests run the real pgBackRest against a posix repository in a
// temporary directory, filled by a real PostgreSQL 15 primary (archive_mode
// on, archive-push) with stanza-create and a full backup.
//
// replicatest.RunConformance is not run: its BadSourceFails check expects
// a copy from an unreachable source member to fail, and a restore from a
// backup never contacts the source (the method announces
// replica.no_leader). The checks of the kit that apply are made here:
// a restored copy runs as a standby, a non-empty directory is refused, a
// password in the source is refused, configuration problems name their
// keys, a cancelled restore leaves no process and no data behind.

// binaryEnv carries the path of the plugin binary built by the first
// (possibly root) run of TestMain to the run as postgres.
const binaryEnv = "CUSTOS_TEST_REPLICA_PGBACKREST_BINARY"

// binDir holds the PostgreSQL 15 executables of Debian's postgresql-15.
const binDir = replicatest.DefaultBinDir

// Test timings.
const (
	// startTimeout bounds a postmaster's start, crash recovery included.
	startTimeout = 60 * time.Second
	// restoreTimeout bounds a restore of the small test cluster.
	restoreTimeout = 2 * time.Minute
	// replayTimeout bounds how long a standby takes to stream or to
	// replay what the primary wrote after the backup.
	replayTimeout = 60 * time.Second
	// cancelLatency bounds the return of a cancelled restore.
	cancelLatency = 15 * time.Second
	// pollInterval paces every eventually-true check.
	pollInterval = 100 * time.Millisecond
)

// The fake ssh: the test binary run under the name "ssh" runs the remote
// command pgBackRest hands it through sh, locally, passing its output on
// at sshRateEnv bytes a second, so that a restore from a "remote"
// repository lasts long enough to be cancelled. pgBackRest itself is real
// on both ends.
const (
	sshName    = "ssh"
	sshRateEnv = "CUSTOS_TEST_SSH_BYTES_PER_SECOND"
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == sshName {
		os.Exit(throttledSSH())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv(binaryEnv) == "" {
		// Built before the tests step down to the postgres user, who has
		// no Go build cache.
		dir, err := os.MkdirTemp("", "custos-replica-pgbackrest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		path := filepath.Join(dir, sdk.BinaryPrefix+"replica-pgbackrest")
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

// throttledSSH is the fake ssh: "ssh [-o opt]... [-p port] user@host
// command".
func throttledSSH() int {
	args := os.Args[1:]
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "fake ssh: no command")
		return 255
	}
	rate, err := strconv.Atoi(os.Getenv(sshRateEnv))
	if err != nil || rate <= 0 {
		rate = 1 << 30
	}
	cmd := exec.Command("/bin/sh", "-c", args[len(args)-1])
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake ssh:", err)
		return 255
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "fake ssh:", err)
		return 255
	}
	const chunk = 4096
	buf := make([]byte, chunk)
	for {
		n, err := out.Read(buf)
		if n > 0 {
			if _, werr := os.Stdout.Write(buf[:n]); werr != nil {
				break
			}
			time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode()
		}
		return 255
	}
	return 0
}

func testLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "pgbackrest", Level: hclog.Warn, Output: os.Stderr})
}

// primary is the PostgreSQL primary whose backups the tests restore.
type primary struct {
	dir      string
	dataDir  string
	sockDir  string
	port     int
	stanza   string
	repoPath string
	logPath  string
	lockPath string
	passFile string
	pm       *postmaster
}

const (
	stanza       = "custos"
	replicator   = "replicator"
	replPassword = "replicator-test-password"
)

// startPrimary initialises and starts a primary that archives to a
// pgBackRest repository, creates the stanza and takes a full backup.
func startPrimary(t *testing.T) *primary {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatal("PostgreSQL refuses to run as root: TestMain steps down to postgres")
	}
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Fatalf("pgbackrest is missing (apt-get install pgbackrest; .ci/install-deps does): %v", err)
	}
	dir := shortTempDir(t)
	p := &primary{
		dir: dir, dataDir: filepath.Join(dir, "primary"), sockDir: filepath.Join(dir, "sock"),
		stanza: stanza, repoPath: filepath.Join(dir, "repo"), logPath: filepath.Join(dir, "log"),
		lockPath: filepath.Join(dir, "lock"), passFile: filepath.Join(dir, "pgpass"),
	}
	for _, d := range []string{p.sockDir, p.repoPath, p.logPath, p.lockPath} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p.port = freePort(t)
	conf := p.writeConfig(t, filepath.Join(dir, "pgbackrest.conf"),
		fmt.Sprintf("\n[%s]\npg1-path=%s\npg1-socket-path=%s\npg1-port=%d\n", stanza, p.dataDir, p.sockDir, p.port))

	run(t, filepath.Join(binDir, "initdb"), "-D", p.dataDir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
	appendFile(t, filepath.Join(p.dataDir, "pg_hba.conf"), "host replication "+replicator+" 127.0.0.1/32 scram-sha-256\n")
	appendFile(t, filepath.Join(p.dataDir, "postgresql.conf"), strings.Join([]string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(p.port),
		"unix_socket_directories = '" + p.sockDir + "'",
		"wal_level = replica",
		"max_wal_senders = 10",
		"archive_mode = on",
		fmt.Sprintf("archive_command = 'pgbackrest --config=%s --stanza=%s archive-push %%p'", conf, stanza),
		// A test primary needs no durability; it should be quick.
		"fsync = off",
		"synchronous_commit = off",
		"lc_messages = 'C'",
		"",
	}, "\n"))
	writeFile(t, p.passFile, fmt.Sprintf("127.0.0.1:%d:*:%s:%s\n", p.port, replicator, replPassword))
	p.pm = startPostmaster(t, p.dataDir)
	p.pm.waitReady(t, p.sockDir, p.port)
	p.psql(t, fmt.Sprintf("CREATE ROLE %s WITH LOGIN REPLICATION PASSWORD '%s'", replicator, replPassword))
	p.psql(t, "CREATE TABLE before_backup AS SELECT g AS n FROM generate_series(1, 1000) g")

	pgbackrest := func(args ...string) {
		run(t, "pgbackrest", append([]string{"--config=" + conf, "--stanza=" + stanza}, args...)...)
	}
	pgbackrest("stanza-create")
	pgbackrest("--type=full", "--start-fast", "backup")
	// Written after the backup: a restored standby has it only by replaying
	// WAL, archived or streamed.
	p.psql(t, "CREATE TABLE after_backup AS SELECT 'replayed'::text AS v")
	segment := p.psql(t, "SELECT pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(replayTimeout)
	for p.psql(t, "SELECT coalesce(last_archived_wal, '') >= '"+segment+"' FROM pg_stat_archiver") != "t" {
		if time.Now().After(deadline) {
			t.Fatalf("WAL segment %s not archived within %s", segment, replayTimeout)
		}
		time.Sleep(pollInterval)
	}
	return p
}

// writeConfig writes a pgBackRest configuration file with the test
// repository, logs and locks, plus extra, and returns its path.
func (p *primary) writeConfig(t *testing.T, path, extra string) string {
	t.Helper()
	writeFile(t, path, fmt.Sprintf("[global]\nrepo1-path=%s\nlog-path=%s\nlock-path=%s\nlog-level-file=detail\n%s",
		p.repoPath, p.logPath, p.lockPath, extra))
	return path
}

// restoreConfig is a configuration file of the test's own for restores,
// so that the processes of one test can be told from the others'.
func (p *primary) restoreConfig(t *testing.T) string {
	t.Helper()
	return p.writeConfig(t, filepath.Join(t.TempDir(), "restore.conf"), "")
}

// section is the [postgresql.pgbackrest] section for a restore with conf.
func section(conf string, extra string) []byte {
	return []byte(fmt.Sprintf(`{"stanza": %q, "config": %q%s}`, stanza, conf, extra))
}

func (p *primary) psql(t *testing.T, sql string) string {
	t.Helper()
	return psql(t, p.sockDir, p.port, sql)
}

func psql(t *testing.T, sockDir string, port int, sql string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", sockDir, "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres", "-c", sql)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psql -c %q: %v: %s", sql, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// request asks for a replica of the primary in dataDir.
func (p *primary) request(dataDir string, config []byte) replica.Request {
	return replica.Request{
		Method:  pgbackrest.Method,
		Scope:   "test",
		Member:  "replica1",
		DataDir: dataDir,
		Source:  &replica.Source{Member: "primary", Host: "127.0.0.1", Port: p.port, DBName: "postgres", User: replicator, PassFile: p.passFile},
		Role:    replica.RoleReplica,
		Config:  config,
		BinDir:  binDir,
	}
}

// creators are the two ways to reach the plugin: in process, and through
// its binary over a real handshake.
func creators() map[string]func(t *testing.T) replica.Creator {
	return map[string]func(t *testing.T) replica.Creator{
		"InProcess": func(*testing.T) replica.Creator { return pgbackrest.New(testLogger()) },
		"Binary": func(t *testing.T) replica.Creator {
			_, c := replicatest.LaunchBinary(t, os.Getenv(binaryEnv))
			return c
		},
	}
}

// progressLog collects progress reports.
type progressLog struct {
	mu   sync.Mutex
	list []replica.Progress
}

func (l *progressLog) add(p replica.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, p)
}

func (l *progressLog) all() []replica.Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]replica.Progress(nil), l.list...)
}

func create(t *testing.T, c replica.Creator, req replica.Request, log *progressLog) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
	defer cancel()
	add := func(replica.Progress) {}
	if log != nil {
		add = log.add
	}
	err := c.CreateReplica(ctx, req, add)
	if ctx.Err() != nil {
		t.Fatalf("CreateReplica did not finish within %s (err %v)", restoreTimeout, err)
	}
	return err
}

func TestPgbackrest(t *testing.T) {
	p := startPrimary(t)
	for name, newCreator := range creators() {
		t.Run("StandbyStreams/"+name, func(t *testing.T) {
			t.Parallel()
			testStandbyStreams(t, p, newCreator(t), "streamed_"+strings.ToLower(name))
		})
		t.Run("StandbyFromArchive/"+name, func(t *testing.T) {
			t.Parallel()
			testStandbyFromArchive(t, p, newCreator(t))
		})
		t.Run("MissingStanza/"+name, func(t *testing.T) {
			t.Parallel()
			testMissingStanza(t, p, newCreator(t), name == "InProcess")
		})
		t.Run("Refusals/"+name, func(t *testing.T) {
			t.Parallel()
			testRefusals(t, p, newCreator(t))
		})
		t.Run("Cancel/"+name, func(t *testing.T) {
			t.Parallel()
			testCancel(t, p, newCreator(t))
		})
	}
	t.Run("KeepData", func(t *testing.T) {
		t.Parallel()
		testKeepData(t, p)
	})
	t.Run("UnreachableRepository", func(t *testing.T) {
		t.Parallel()
		testUnreachableRepository(t, p)
	})
	t.Run("Identity", func(t *testing.T) {
		t.Parallel()
		id, _ := replicatest.LaunchBinary(t, os.Getenv(binaryEnv))
		if id.Name != pgbackrest.Method || !id.Serves(sdk.KindReplica) || id.Version == "" {
			t.Fatalf("identity %s", id)
		}
		caps := id.Capabilities
		if caps[replica.CapMethods] != pgbackrest.Method || caps[replica.CapNoLeader] != "true" || caps[replica.CapKeepData] != "true" {
			t.Errorf("capabilities %v", caps)
		}
	})
}

// testStandbyStreams: a restored replica, given the host's
// primary_conninfo, starts as a hot standby, streams from the primary and
// shows what the primary wrote after the backup.
func testStandbyStreams(t *testing.T, p *primary, c replica.Creator, table string) {
	dataDir := filepath.Join(t.TempDir(), "data")
	var log progressLog
	if err := create(t, c, p.request(dataDir, section(p.restoreConfig(t), `, "process_max": 2`)), &log); err != nil {
		t.Fatal(err)
	}
	requireRestored(t, dataDir, &log)
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres passfile=%s", p.port, replicator, p.passFile)
	appendFile(t, filepath.Join(dataDir, "postgresql.auto.conf"), "primary_conninfo = '"+conninfo+"'\n")
	s := startStandby(t, dataDir)
	deadline := time.Now().Add(replayTimeout)
	for !strings.Contains(s.pm.log.String(), "started streaming WAL from primary") {
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not stream within %s:\n%s", replayTimeout, s.pm.log.String())
		}
		time.Sleep(pollInterval)
	}
	p.psql(t, "CREATE TABLE "+table+" AS SELECT 1 AS n")
	s.waitFor(t, "SELECT count(*) FROM "+table, "1")
	s.waitFor(t, "SELECT v FROM after_backup", "replayed")
	s.waitFor(t, "SELECT pg_is_in_recovery()", "t")
}

// testStandbyFromArchive: without primary_conninfo, the standby reaches
// consistency and replays the archived WAL through pgBackRest's
// restore_command alone.
func testStandbyFromArchive(t *testing.T, p *primary, c replica.Creator) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var log progressLog
	if err := create(t, c, p.request(dataDir, section(p.restoreConfig(t), "")), &log); err != nil {
		t.Fatal(err)
	}
	requireRestored(t, dataDir, &log)
	s := startStandby(t, dataDir)
	s.waitFor(t, "SELECT v FROM after_backup", "replayed")
	s.waitFor(t, "SELECT count(*) FROM before_backup", "1000")
	if out := s.pm.log.String(); !strings.Contains(out, "restored log file") || !strings.Contains(out, "consistent recovery state reached") {
		t.Errorf("the standby's log does not show WAL restored from the archive:\n%s", out)
	}
}

// requireRestored checks a restore as a user would: a data directory
// PostgreSQL may start as a standby fetching WAL from the repository,
// with progress reported on the way.
func requireRestored(t *testing.T, dataDir string, log *progressLog) {
	t.Helper()
	for _, f := range []string{"PG_VERSION", "global/pg_control", "base", "pg_wal", "standby.signal"} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Errorf("the restore lacks %s: %v", f, err)
		}
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		t.Errorf("data directory mode %o, PostgreSQL wants 0700 or 0750", perm)
	}
	auto, err := os.ReadFile(filepath.Join(dataDir, "postgresql.auto.conf"))
	if err != nil || !bytes.Contains(auto, []byte("archive-get")) || !bytes.Contains(auto, []byte("--stanza="+stanza)) {
		t.Errorf("postgresql.auto.conf has no pgBackRest restore_command (%v):\n%s", err, auto)
	}
	var percents, lines int
	last := -1
	for _, p := range log.all() {
		if p.Percent != replica.PercentUnknown {
			percents++
			if p.Percent < last {
				t.Errorf("progress went back from %d%% to %d%%", last, p.Percent)
			}
			last = p.Percent
		} else {
			lines++
		}
	}
	if percents < 2 || last != 100 || lines == 0 {
		t.Errorf("progress: %d reports with a percent (last %d), %d lines; want several, ending at 100", percents, last, lines)
	}
}

func testMissingStanza(t *testing.T, p *primary, c replica.Creator, inProcess bool) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := []byte(fmt.Sprintf(`{"stanza": "no-such-stanza", "config": %q, "repo_path": %q}`, p.restoreConfig(t), p.repoPath))
	err := create(t, c, p.request(dataDir, cfg), nil)
	if err == nil {
		t.Fatal("a restore of a stanza that does not exist succeeded")
	}
	want := fmt.Sprintf(`stanza "no-such-stanza" does not exist in repository repo1 at %s`, p.repoPath)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q\nwant it to say %q", err, want)
	}
	if inProcess && !errors.Is(err, pgbackrest.ErrStanzaNotFound) {
		t.Errorf("err = %v, want it to wrap ErrStanzaNotFound", err)
	}
	requireEmpty(t, dataDir, true)
}

// testRefusals: what the contract refuses, with the real pgbackrest.
func testRefusals(t *testing.T, p *primary, c replica.Creator) {
	conf := p.restoreConfig(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dataDir, "keep-me"), "precious")
	if err := create(t, c, p.request(dataDir, section(conf, "")), nil); !errors.Is(err, replica.ErrDataDirNotEmpty) {
		t.Errorf("restore into a non-empty directory = %v, want ErrDataDirNotEmpty", err)
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "keep-me")); err != nil || string(b) != "precious" {
		t.Errorf("existing file changed: %q, %v", b, err)
	}

	absent := filepath.Join(t.TempDir(), "data")
	req := p.request(absent, section(conf, ""))
	req.Source.ConnString = req.Source.DSN() + " password=secret"
	if err := create(t, c, req, nil); !errors.Is(err, replica.ErrInvalidRequest) || strings.Contains(err.Error(), "secret") {
		t.Errorf("password in the source = %v, want ErrInvalidRequest without the password", err)
	}
	err := create(t, c, p.request(absent, []byte(`{"stanza": "x", "custos_conformance_unknown_key": 1, "options": {"repo1-cipher-pass": "x"}}`)), nil)
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) || len(cfgErr.Problems) != 2 {
		t.Errorf("bad section = %v, want a config error naming two keys", err)
	}
	requireEmpty(t, absent, false)
}

// testCancel: a restore cancelled half way kills pgbackrest and all it
// started, and removes the partial restore. The repository is reached
// through the throttled fake ssh so that the restore lasts.
func testCancel(t *testing.T, p *primary, c replica.Creator) {
	dir := t.TempDir()
	ssh := filepath.Join(dir, sshName)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, ssh); err != nil {
		t.Fatal(err)
	}
	conf := p.restoreConfig(t)
	dataDir := filepath.Join(dir, "data")
	opts := fmt.Sprintf(`, "options": {"repo1-host": "repo.invalid", "repo1-host-user": "postgres", "repo1-host-config": %q, "cmd-ssh": %q}`, conf, ssh)
	req := p.request(dataDir, section(conf, opts))
	req.Env = map[string]string{sshRateEnv: "65536"}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log progressLog
	result := make(chan error, 1)
	go func() { result <- c.CreateReplica(ctx, req, log.add) }()
	deadline := time.Now().Add(restoreTimeout)
	for {
		if percentSeen(log.all()) && dirHasFiles(dataDir) {
			break
		}
		select {
		case err := <-result:
			t.Fatalf("the throttled restore ended before it could be cancelled: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restore did not start within %s: %+v", restoreTimeout, log.all())
		}
		time.Sleep(pollInterval)
	}
	if left := processesMentioning(conf); len(left) == 0 {
		t.Fatalf("no process of the restore found before the cancel (the check would prove nothing)")
	}
	cancel()
	select {
	case err := <-result:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled restore = %v, want an error matching context.Canceled", err)
		}
	case <-time.After(cancelLatency):
		t.Fatalf("the cancelled restore did not return within %s", cancelLatency)
	}
	requireEmpty(t, dataDir, false)
	// Every process of the restore names its configuration file: the local
	// pgbackrest, its fake ssh, sh and the remote pgbackrest.
	deadline = time.Now().Add(5 * time.Second)
	for left := processesMentioning(conf); len(left) > 0; left = processesMentioning(conf) {
		if time.Now().After(deadline) {
			t.Fatalf("processes of the cancelled restore still run: %q", left)
		}
		time.Sleep(pollInterval)
	}
	if left := processesMentioning(dataDir); len(left) > 0 {
		t.Errorf("processes still mention the data directory: %q", left)
	}
}

// testKeepData: with KeepData (through the binary, so the field crosses
// the wire), a restore over an old copy is a --delta restore: a stray file
// goes, a lost file comes back.
func testKeepData(t *testing.T, p *primary) {
	_, c := replicatest.LaunchBinary(t, os.Getenv(binaryEnv))
	conf := p.restoreConfig(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := create(t, c, p.request(dataDir, section(conf, "")), nil); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dataDir, "base", "stray-file")
	writeFile(t, stray, "not in the backup")
	lost := filepath.Join(dataDir, "global", "pg_filenode.map")
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}
	req := p.request(dataDir, section(conf, ""))
	if err := create(t, c, req, nil); !errors.Is(err, replica.ErrDataDirNotEmpty) {
		t.Fatalf("restore over an old copy without KeepData = %v, want ErrDataDirNotEmpty", err)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Fatalf("the refused restore touched the old copy: %v", err)
	}
	req.KeepData = true
	var log progressLog
	if err := create(t, c, req, &log); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stray file survived the delta restore: %v", err)
	}
	if _, err := os.Stat(lost); err != nil {
		t.Errorf("the lost file was not restored: %v", err)
	}
	var delta bool
	for _, pr := range log.all() {
		delta = delta || strings.Contains(pr.Message, "--delta")
	}
	if !delta {
		t.Errorf("no --delta in the progress of the second restore")
	}
	s := startStandby(t, dataDir)
	s.waitFor(t, "SELECT v FROM after_backup", "replayed")
}

// testUnreachableRepository: an S3 repository nobody serves is reported
// as unreachable, naming it. The keys travel in the request's environment,
// never on the command line.
func testUnreachableRepository(t *testing.T, p *primary) {
	c := pgbackrest.New(testLogger())
	conf := p.restoreConfig(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	opts := fmt.Sprintf(`, "options": {"repo1-type": "s3", "repo1-s3-bucket": "custos-test", "repo1-s3-endpoint": "127.0.0.1",
		"repo1-s3-uri-style": "path", "repo1-storage-port": %d, "repo1-s3-region": "us-east-1", "repo1-storage-verify-tls": false,
		"io-timeout": 1}`, freePort(t))
	req := p.request(dataDir, section(conf, opts))
	req.Env = map[string]string{"PGBACKREST_REPO1_S3_KEY": "key", "PGBACKREST_REPO1_S3_KEY_SECRET": "secret"}
	err := create(t, c, req, nil)
	if !errors.Is(err, pgbackrest.ErrRepoUnreachable) || !strings.Contains(err.Error(), "cannot reach repository repo1 in S3 bucket custos-test") ||
		!strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("err = %v, want the S3 repository named unreachable", err)
	}
	requireEmpty(t, dataDir, false)
}

// standby is a restored copy running as a hot standby.
type standby struct {
	sockDir string
	port    int
	pm      *postmaster
}

func startStandby(t *testing.T, dataDir string) *standby {
	t.Helper()
	s := &standby{sockDir: shortTempDir(t), port: freePort(t)}
	s.pm = startPostmaster(t, dataDir,
		"-c", "port="+strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.sockDir,
		"-c", "hot_standby=on",
		"-c", "lc_messages=C",
		"-c", "logging_collector=off")
	s.pm.waitReady(t, s.sockDir, s.port)
	return s
}

// waitFor polls the standby until sql returns want.
func (s *standby) waitFor(t *testing.T, sql, want string) {
	t.Helper()
	deadline := time.Now().Add(replayTimeout)
	var got string
	for {
		cmd := exec.Command(filepath.Join(binDir, "psql"), "-X", "-A", "-t", "-h", s.sockDir, "-p", strconv.Itoa(s.port),
			"-U", "postgres", "-d", "postgres", "-c", sql)
		out, err := cmd.CombinedOutput()
		got = strings.TrimSpace(string(out))
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby: %s = %q, want %q after %s:\n%s", sql, got, want, replayTimeout, s.pm.log.String())
		}
		time.Sleep(pollInterval)
	}
}

// postmaster is a postgres server process started by a test, with its
// log kept for failure messages.
type postmaster struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
}

// startPostmaster runs postgres -D dataDir as a direct child and stops
// it with a fast shutdown when the test ends.
func startPostmaster(t *testing.T, dataDir string, args ...string) *postmaster {
	t.Helper()
	pm := &postmaster{log: &syncBuffer{}, exited: make(chan struct{})}
	pm.cmd = exec.Command(filepath.Join(binDir, "postgres"), append([]string{"-D", dataDir}, args...)...)
	pm.cmd.Stdout, pm.cmd.Stderr = pm.log, pm.log
	pm.cmd.Env = append(os.Environ(), "LC_ALL=C")
	if err := pm.cmd.Start(); err != nil {
		t.Fatalf("starting postgres -D %s: %v", dataDir, err)
	}
	go func() {
		_ = pm.cmd.Wait()
		close(pm.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-pm.exited:
			return
		default:
		}
		_ = pm.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-pm.exited:
		case <-time.After(startTimeout):
			_ = pm.cmd.Process.Kill()
			<-pm.exited
			t.Errorf("postgres -D %s did not stop in time; killed", dataDir)
		}
	})
	return pm
}

// waitReady polls pg_isready until the server accepts connections.
func (pm *postmaster) waitReady(t *testing.T, sockDir string, port int) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-pm.exited:
			t.Fatalf("postgres exited while starting:\n%s", pm.log.String())
		default:
		}
		if exec.Command(filepath.Join(binDir, "pg_isready"), "-q", "-h", sockDir, "-p", strconv.Itoa(port)).Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not accept connections within %s:\n%s", startTimeout, pm.log.String())
		}
		time.Sleep(pollInterval)
	}
}

// requireEmpty checks that a data directory is back as it was before a
// failed restore: existing and empty when existed, else absent.
func requireEmpty(t *testing.T, dir string, existed bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	switch {
	case existed && err != nil:
		t.Errorf("the data directory should still exist: %v", err)
	case !existed && !errors.Is(err, os.ErrNotExist):
		t.Errorf("the data directory should be absent: %v, holding %d entries", err, len(entries))
	case len(entries) > 0:
		t.Errorf("the data directory holds %d entries, want none (first %s)", len(entries), entries[0].Name())
	}
}

func percentSeen(list []replica.Progress) bool {
	for _, p := range list {
		if p.Percent != replica.PercentUnknown {
			return true
		}
	}
	return false
}

func dirHasFiles(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// processesMentioning lists the command lines that contain s. Zombies
// have an empty command line and do not count.
func processesMentioning(s string) []string {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		out = append(out, string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
	}
	return out
}

// shortTempDir is a temporary directory with a short path: a Unix socket
// path must fit in 107 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgbr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, content); err != nil {
		_ = f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
