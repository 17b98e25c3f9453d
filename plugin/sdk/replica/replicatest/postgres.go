package replicatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// DefaultBinDir is where Debian's postgresql-15 package puts PostgreSQL's
// executables.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Timings of the PostgreSQL processes the kit starts.
const (
	// startTimeout bounds how long a postmaster may take to accept
	// connections (crash recovery of a fresh copy included).
	startTimeout = 30 * time.Second
	// stopTimeout bounds a fast shutdown before the postmaster is killed.
	stopTimeout = 30 * time.Second
	// pollInterval paces every eventually-true check of the kit.
	pollInterval = 100 * time.Millisecond
)

// The roles StartPrimary creates; the passwords only live in the pgpass
// file.
const (
	primarySuperuser   = "postgres"
	primaryReplicator  = "replicator"
	primaryPasswordLen = 24
)

// Primary is a PostgreSQL primary started for a test, listening on
// 127.0.0.1 only (no Unix socket), with password authentication.
type Primary struct {
	BinDir  string
	DataDir string
	Port    int
	// PassFile is a pgpass file with the passwords of the superuser and
	// of the replication role.
	PassFile string
	proc     *Postmaster
}

// Source is the primary as a replica source, connecting as the
// replication role with the password in PassFile.
func (p *Primary) Source() replica.Source {
	return replica.Source{
		Member:   "primary",
		Host:     "127.0.0.1",
		Port:     p.Port,
		DBName:   "postgres",
		User:     primaryReplicator,
		PassFile: p.PassFile,
	}
}

// Psql runs one SQL command on the primary as the superuser and returns
// its unaligned output.
func (p *Primary) Psql(ctx context.Context, sql string) (string, error) {
	return psql(ctx, p.BinDir, p.Port, primarySuperuser, p.PassFile, sql)
}

// StartPrimary initialises and starts a primary in a temporary directory
// on a free port, creates the replication role, and stops it when the test
// ends. binDir holds PostgreSQL's executables (DefaultBinDir when empty).
// It must not run as root (see RunAsPostgres).
func StartPrimary(t *testing.T, binDir string) *Primary {
	t.Helper()
	if binDir == "" {
		binDir = DefaultBinDir
	}
	RequireBinaries(t, binDir, "initdb", "postgres", "pg_isready", "psql")
	if os.Geteuid() == 0 {
		t.Fatal("PostgreSQL refuses to run as root: call replicatest.RunAsPostgres from TestMain")
	}
	dir := t.TempDir()
	p := &Primary{BinDir: binDir, DataDir: filepath.Join(dir, "primary"), PassFile: filepath.Join(dir, "pgpass")}
	superPass, replPass := randomPassword(t), randomPassword(t)
	pwFile := filepath.Join(dir, "pwfile")
	writeFile(t, pwFile, superPass+"\n", 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", p.DataDir, "-U", primarySuperuser, "--pwfile="+pwFile,
		"--auth=scram-sha-256", "--no-sync")
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.Port = FreePort(t)
	writeFile(t, filepath.Join(p.DataDir, "pg_hba.conf"),
		"host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n", 0o600)
	appendFile(t, filepath.Join(p.DataDir, "postgresql.conf"), strings.Join([]string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(p.Port),
		"unix_socket_directories = ''",
		"wal_level = replica",
		// Enough for several concurrent copies (two senders each).
		"max_wal_senders = 20",
		"max_replication_slots = 10",
		"wal_keep_size = '128MB'",
		// A test primary needs no durability; it should be quick.
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"lc_messages = 'C'",
		"",
	}, "\n"))
	writeFile(t, p.PassFile, fmt.Sprintf("127.0.0.1:%d:*:%s:%s\n127.0.0.1:%d:*:%s:%s\n",
		p.Port, primarySuperuser, superPass, p.Port, primaryReplicator, replPass), 0o600)

	p.proc = StartPostmaster(t, binDir, p.DataDir)
	p.proc.WaitReady(t, p.Port)
	if _, err := p.Psql(ctx, fmt.Sprintf("CREATE ROLE %s WITH LOGIN REPLICATION PASSWORD '%s'", primaryReplicator, replPass)); err != nil {
		t.Fatalf("creating the replication role: %v", err)
	}
	return p
}

// Postmaster is a postgres server process started by a kit, with its
// log kept for failure messages. The bootstrap kit starts the clusters it
// checks with it too.
type Postmaster struct {
	binDir string
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
}

// StartPostmaster runs postgres -D dataDir as a direct child (never
// pg_ctl: an orphaned postmaster is not reaped on every machine) and stops
// it with a fast shutdown when the test ends.
func StartPostmaster(t *testing.T, binDir, dataDir string, args ...string) *Postmaster {
	t.Helper()
	pm := &Postmaster{binDir: binDir, log: &syncBuffer{}, exited: make(chan struct{})}
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
		if err := pm.stop(); err != nil {
			t.Errorf("stopping postgres -D %s: %v\n%s", dataDir, err, pm.log.String())
		}
	})
	return pm
}

// Log returns what the server wrote so far.
func (pm *Postmaster) Log() string { return pm.log.String() }

// Exited is closed once the server process has ended.
func (pm *Postmaster) Exited() <-chan struct{} { return pm.exited }

// stop asks for a fast shutdown and kills the postmaster if it does not
// finish in time.
func (pm *Postmaster) stop() error {
	select {
	case <-pm.exited:
		return nil
	default:
	}
	_ = pm.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-pm.exited:
		return nil
	case <-time.After(stopTimeout):
		_ = pm.cmd.Process.Kill()
		<-pm.exited
		return errors.New("fast shutdown timed out; killed")
	}
}

// WaitReady polls pg_isready until the server accepts connections.
func (pm *Postmaster) WaitReady(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-pm.exited:
			t.Fatalf("postgres exited while starting:\n%s", pm.log.String())
		default:
		}
		cmd := exec.Command(filepath.Join(pm.binDir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port))
		if cmd.Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not accept connections on port %d within %s:\n%s", port, startTimeout, pm.log.String())
		}
		time.Sleep(pollInterval)
	}
}

func psql(ctx context.Context, binDir string, port int, user, passFile, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", user, "-d", "postgres", "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSFILE="+passFile, "PGCONNECT_TIMEOUT=10", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("psql -c %q: %v: %s", sql, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// RequireBinaries fails the test, saying what to install, when one of
// PostgreSQL's executables is missing.
func RequireBinaries(t *testing.T, binDir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(binDir, n)); err != nil {
			t.Fatalf("PostgreSQL executable %s missing in %s (install postgresql-15: apt-get install postgresql-15): %v", n, binDir, err)
		}
	}
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func randomPassword(t *testing.T) string {
	t.Helper()
	b := make([]byte, primaryPasswordLen/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
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
