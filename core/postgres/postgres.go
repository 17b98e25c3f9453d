package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/core/reaper"
)

// commandWaitDelay bounds how long a helper command (initdb, pg_rewind...)
// may keep its output pipes open after it was killed on cancellation.
const commandWaitDelay = 5 * time.Second

// Postgres drives one local PostgreSQL. It is safe for concurrent use; the
// HA loop normally calls it from one goroutine while the API reads
// observations.
type Postgres struct {
	st     atomic.Pointer[snapshot]
	logger hclog.Logger

	mu        sync.Mutex
	pm        *Postmaster
	setup     Setup
	setupSet  bool
	closed    bool
	watchers  sync.WaitGroup
	stopWatch chan struct{}

	connMu sync.Mutex
	conn   *pgx.Conn
	// apiConn is the REST API's own connection (Positions), held by
	// whoever holds a token of apiSem (capacity 1).
	apiSem  chan struct{}
	apiConn *pgx.Conn

	// streamed remembers the newest timeline the walreceiver of the
	// running postmaster streamed (see Observe).
	streamed streamedTimeline
	// pending is the last pending-restart list (see Observe).
	pending pendingSettings

	// slotCopies remembers the logical slots copied from the primary.
	slotCopies slotCopies
}

// New validates cfg and returns a Postgres for it. It starts nothing; use
// Adopt to take over a postmaster that is already running.
func New(cfg Config, logger hclog.Logger) (*Postgres, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	norm, la, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		logger:    logger.Named("postgres"),
		stopWatch: make(chan struct{}),
		apiSem:    make(chan struct{}, 1),
	}
	p.st.Store(&snapshot{cfg: norm, listen: la})
	return p, nil
}

// snapshot is one validated configuration; Reconfigure swaps it whole.
type snapshot struct {
	cfg    Config
	listen listenAddr
}

func (p *Postgres) c() *snapshot { return p.st.Load() }

// Config returns the normalized configuration.
func (p *Postgres) Config() Config { return p.c().cfg }

// Reconfigure replaces the configuration (the dynamic configuration
// changed: parameters, pg_hba, slots, rewind settings...). Scope, member
// name and data directory cannot change. Nothing is written: call
// Configure (with LastSetup) and Reload or Restart afterwards.
func (p *Postgres) Reconfigure(cfg Config) error {
	norm, la, err := cfg.normalize()
	if err != nil {
		return err
	}
	old := p.c().cfg
	if norm.Scope != old.Scope || norm.Name != old.Name || norm.DataDir != old.DataDir {
		return fmt.Errorf("reconfiguring postgres: scope, name and data_dir cannot change (%s/%s/%s)", old.Scope, old.Name, old.DataDir)
	}
	p.st.Store(&snapshot{cfg: norm, listen: la})
	return nil
}

// DataDir is the absolute data directory.
func (p *Postgres) DataDir() string { return p.c().cfg.DataDir }

// PgpassPath is the pgpass file the agent writes; pass it as PGPASSFILE to
// libpq tools (Env does).
func (p *Postgres) PgpassPath() string { return p.c().cfg.Pgpass }

// Close closes the observation connection and stops watching an adopted
// postmaster. It leaves PostgreSQL running.
func (p *Postgres) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stopWatch)
	}
	p.mu.Unlock()
	p.watchers.Wait()
	p.closeConn()
	return nil
}

// bin returns the path of a PostgreSQL binary.
func (p *Postgres) bin(name string) string {
	file := name
	if o := p.c().cfg.BinName[name]; o != "" {
		file = o
	}
	if p.c().cfg.BinDir == "" || filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(p.c().cfg.BinDir, file)
}

// Env is the environment for libpq tools the agent runs: the agent's own
// environment without libpq's PG* variables (they would redirect the
// tools), plus PGPASSFILE.
func (p *Postgres) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PG") && !strings.HasPrefix(name, "PG_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PGPASSFILE="+p.c().cfg.Pgpass)
}

// cEnv is Env with the C locale, for tools whose output is parsed.
func (p *Postgres) cEnv() []string {
	var env []string
	for _, kv := range p.Env() {
		if strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "LANGUAGE=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// command prepares a helper command bound to ctx: on cancellation its
// whole process group is killed.
func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	reaper.Prepare(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = commandWaitDelay
	cmd.Env = p.cEnv()
	return cmd
}

// CommandError is a helper command that failed, with the end of what it
// wrote to stderr.
type CommandError struct {
	Command string
	Err     error
	Stderr  string
}

func (e *CommandError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("%s: %v", e.Command, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Command, e.Err, e.Stderr)
}

func (e *CommandError) Unwrap() error { return e.Err }

// stderrTailBytes bounds how much of a failed command's stderr goes into
// its error: enough for PostgreSQL's FATAL line and its DETAIL and HINT.
const stderrTailBytes = 2048

func runCommand(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		tail := strings.TrimSpace(stderr.String())
		if len(tail) > stderrTailBytes {
			tail = "..." + tail[len(tail)-stderrTailBytes:]
		}
		if tail == "" {
			tail = strings.TrimSpace(lastBytes(stdout.Bytes(), stderrTailBytes))
		}
		return stdout.Bytes(), &CommandError{Command: filepath.Base(cmd.Path), Err: err, Stderr: tail}
	}
	return stdout.Bytes(), nil
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		return "..." + string(b[len(b)-n:])
	}
	return string(b)
}

// output runs a helper command and returns its stdout.
func (p *Postgres) output(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runCommand(p.command(ctx, name, args...))
}

// timeoutOr returns d, or the configured pg_ctl_timeout when d is 0.
func (p *Postgres) timeoutOr(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return p.c().cfg.PgCtlTimeout
}

// ErrClosed is returned by calls on a closed Postgres.
var ErrClosed = errors.New("postgres: closed")
