package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-ha/custos/core/reaper"
)

const (
	// readyPollInterval is how often a starting server is asked whether
	// it accepts connections; a fresh cluster is ready in a fraction of a
	// second, and each probe is one short connection attempt.
	readyPollInterval = 100 * time.Millisecond
	// readyProbeTimeout bounds one readiness probe (connect and startup).
	readyProbeTimeout = 2 * time.Second
	// killWait bounds the wait for processes to die after SIGKILL; the
	// kernel needs milliseconds, more only under heavy I/O.
	killWait = 10 * time.Second
	// logTailLines is how many lines of postmaster.log a start failure
	// carries: enough for the FATAL line and the context before it.
	logTailLines = 20
)

// ExitStatus is how a postmaster ended. Known is false for an adopted
// postmaster (not our child: only its disappearance is seen).
type ExitStatus struct {
	Known  bool
	Code   int // exit code; -1 when killed by a signal
	Signal syscall.Signal
}

func (s ExitStatus) String() string {
	switch {
	case !s.Known:
		return "exited (status unknown: not our child)"
	case s.Signal != 0:
		return "killed by signal " + s.Signal.String()
	default:
		return "exit status " + strconv.Itoa(s.Code)
	}
}

// Postmaster is one running (or finished) postmaster process.
type Postmaster struct {
	pid   int
	child bool
	// logPath and logOffset locate this run's output in postmaster.log.
	logPath   string
	logOffset int64
	done      chan struct{}
	status    ExitStatus
}

// Pid is the postmaster's process id.
func (pm *Postmaster) Pid() int { return pm.pid }

// Child reports whether the agent started this postmaster (it is a direct
// child) rather than adopting it.
func (pm *Postmaster) Child() bool { return pm.child }

// Exited is closed the moment the postmaster has exited.
func (pm *Postmaster) Exited() <-chan struct{} { return pm.done }

// Running reports whether the postmaster has not exited yet.
func (pm *Postmaster) Running() bool {
	select {
	case <-pm.done:
		return false
	default:
		return true
	}
}

// Status is the exit status; meaningful once Exited is closed.
func (pm *Postmaster) Status() ExitStatus {
	<-pm.done
	return pm.status
}

// LogTail returns the last lines this postmaster wrote to postmaster.log.
func (pm *Postmaster) LogTail(n int) []string {
	if pm.logPath == "" {
		return nil
	}
	return tailFile(pm.logPath, pm.logOffset, n)
}

// Postmaster returns the current postmaster (started or adopted), or nil.
func (p *Postgres) Postmaster() *Postmaster {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pm
}

// Exited returns a channel closed when the current postmaster exits; nil
// (blocks forever in a select) when there is none.
func (p *Postgres) Exited() <-chan struct{} {
	if pm := p.Postmaster(); pm != nil {
		return pm.done
	}
	return nil
}

// IsRunning reports whether a postmaster started or adopted by this value
// is running. It does no I/O.
func (p *Postgres) IsRunning() bool {
	pm := p.Postmaster()
	return pm != nil && pm.Running()
}

// ErrAlreadyRunning is returned by Start when a postmaster runs on the data
// directory.
var ErrAlreadyRunning = errors.New("postgres: a postmaster is already running")

// ErrStillStarting is returned when the postmaster runs but does not
// accept connections within the timeout.
var ErrStillStarting = errors.New("postgres: still starting")

// StartError is a postmaster that exited while starting.
type StartError struct {
	Status ExitStatus
	// LogTail holds the last lines of its output.
	LogTail []string
}

func (e *StartError) Error() string {
	msg := "postgres exited while starting: " + e.Status.String()
	if len(e.LogTail) > 0 {
		msg += ": " + strings.Join(e.LogTail, " | ")
	}
	return msg
}

// Start starts `postgres -D <data_dir> --config-file=<data_dir>/postgresql.conf`
// as a direct child of the agent, with its output appended to
// postmaster.log, and waits up to timeout (0: pg_ctl_timeout) for it to
// accept connections. It returns nil once the server accepts connections,
// a *StartError when it exited (with the end of its log), or an error
// wrapping ErrStillStarting when it is still starting (it keeps running:
// call WaitReady again or Stop). The postmaster outlives ctx, which only
// bounds the wait. Configure must have written the files first.
func (p *Postgres) Start(ctx context.Context, timeout time.Duration) error {
	if err := p.startProcess(); err != nil {
		return err
	}
	return p.WaitReady(ctx, timeout)
}

func (p *Postgres) startProcess() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.pm != nil && p.pm.Running() {
		return fmt.Errorf("starting postgres: %w (pid %d)", ErrAlreadyRunning, p.pm.pid)
	}
	if pid, alive := p.postmasterFromPidFile(); alive {
		return fmt.Errorf("starting postgres: %w (pid %d from postmaster.pid; adopt it)", ErrAlreadyRunning, pid)
	}
	if err := checkDataDir(p.c().cfg.DataDir, true); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	if st, err := dirState(p.c().cfg.DataDir); st != DirInitialized {
		if err == nil {
			err = fmt.Errorf("data directory %s is %s", p.c().cfg.DataDir, st)
		}
		return fmt.Errorf("starting postgres: %w", err)
	}
	if err := os.MkdirAll(p.c().cfg.LogDir, 0o700); err != nil {
		return fmt.Errorf("starting postgres: creating log directory: %w", err)
	}
	logPath := filepath.Join(p.c().cfg.LogDir, postmasterLogFile)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("starting postgres: opening %s: %w", logPath, err)
	}
	defer logFile.Close()
	offset, _ := logFile.Seek(0, io.SeekEnd)

	dd := p.c().cfg.DataDir
	// Not CommandContext: the postmaster must outlive the call. Its
	// output goes straight to the file, so it keeps logging if the agent
	// dies.
	cmd := exec.Command(p.bin(BinPostgres), "-D", dd, "--config-file="+filepath.Join(dd, confFile))
	reaper.Prepare(cmd)
	cmd.Dir = dd
	cmd.Env = p.Env()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	pm := &Postmaster{
		pid:       cmd.Process.Pid,
		child:     true,
		logPath:   logPath,
		logOffset: offset,
		done:      make(chan struct{}),
	}
	go func() {
		err := cmd.Wait()
		pm.status = exitStatus(cmd.ProcessState, err)
		close(pm.done)
	}()
	p.pm = pm
	p.logger.Info("started postgres", "pid", pm.pid, "data_dir", dd)
	return nil
}

func exitStatus(ps *os.ProcessState, err error) ExitStatus {
	if ps == nil {
		return ExitStatus{Known: false, Code: -1}
	}
	st := ExitStatus{Known: true, Code: ps.ExitCode()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Signal = ws.Signal()
	}
	return st
}

// WaitReady waits up to timeout (0: pg_ctl_timeout) for the current
// postmaster to accept connections; see Start for the results.
func (p *Postgres) WaitReady(ctx context.Context, timeout time.Duration) error {
	pm := p.Postmaster()
	if pm == nil {
		return fmt.Errorf("waiting for postgres: no postmaster")
	}
	deadline := time.NewTimer(p.timeoutOr(timeout))
	defer deadline.Stop()
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	for {
		ready, err := p.probeReady(ctx)
		if ready {
			return nil
		}
		select {
		case <-pm.done:
			return &StartError{Status: pm.status, LogTail: pm.LogTail(logTailLines)}
		default:
		}
		select {
		case <-pm.done:
			return &StartError{Status: pm.status, LogTail: pm.LogTail(logTailLines)}
		case <-ctx.Done():
			return fmt.Errorf("waiting for postgres to accept connections: %w", ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("waiting for postgres pid %d to accept connections (%v): %w", pm.pid, err, ErrStillStarting)
		case <-tick.C:
		}
	}
}

// probeReady tells whether the server answers: an answer other than
// "the database system is starting up" (SQLSTATE 57P03) means it accepts
// connections, even when it refuses this login.
func (p *Postgres) probeReady(ctx context.Context) (bool, error) {
	cfg, err := p.localConfig()
	if err != nil {
		return false, err
	}
	cfg.ConnectTimeout = readyProbeTimeout
	ctx, cancel := context.WithTimeout(ctx, readyProbeTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, &cfg.Config)
	if err == nil {
		conn.Close(ctx)
		return true, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code != "57P03", err
	}
	return false, err
}

// StopMode is how PostgreSQL shuts down.
type StopMode string

// Stop modes and their signals.
const (
	// StopSmart waits for clients to disconnect (SIGTERM).
	StopSmart StopMode = "smart"
	// StopFast disconnects clients and checkpoints (SIGINT).
	StopFast StopMode = "fast"
	// StopImmediate exits without a checkpoint; crash recovery follows
	// (SIGQUIT).
	StopImmediate StopMode = "immediate"
)

func (m StopMode) signal() (syscall.Signal, error) {
	switch m {
	case StopSmart:
		return syscall.SIGTERM, nil
	case StopFast, "":
		return syscall.SIGINT, nil
	case StopImmediate:
		return syscall.SIGQUIT, nil
	}
	return 0, fmt.Errorf("unknown stop mode %q", m)
}

// StopOptions tune Stop.
type StopOptions struct {
	Mode StopMode // default fast
	// Timeout bounds the wait; 0 means pg_ctl_timeout.
	Timeout time.Duration
	// KillOnTimeout SIGKILLs the postmaster and its children when the
	// timeout passes, then waits for them to die.
	KillOnTimeout bool
}

// ErrStopTimeout is returned when the postmaster is still running after
// the stop timeout (and KillOnTimeout was not set).
var ErrStopTimeout = errors.New("postgres: still running after the stop timeout")

// Stop shuts the postmaster down and returns once it has exited. A
// postmaster left by a previous agent is adopted first. Stopping a server
// that is not running is not an error.
func (p *Postgres) Stop(ctx context.Context, opts StopOptions) error {
	sig, err := opts.Mode.signal()
	if err != nil {
		return fmt.Errorf("stopping postgres: %w", err)
	}
	pm := p.Postmaster()
	if pm == nil || !pm.Running() {
		adopted, err := p.Adopt(ctx)
		if err != nil {
			return fmt.Errorf("stopping postgres: %w", err)
		}
		if !adopted {
			return nil
		}
		pm = p.Postmaster()
	}
	// Our own connection would hold up a smart shutdown for good.
	p.closeConn()
	if err := syscall.Kill(pm.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping postgres pid %d (%s): %w", pm.pid, opts.Mode, err)
	}
	p.logger.Info("stopping postgres", "pid", pm.pid, "mode", string(opts.Mode))
	timer := time.NewTimer(p.timeoutOr(opts.Timeout))
	defer timer.Stop()
	select {
	case <-pm.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping postgres pid %d: %w", pm.pid, ctx.Err())
	case <-timer.C:
	}
	if !opts.KillOnTimeout {
		return fmt.Errorf("stopping postgres pid %d (%s): %w", pm.pid, opts.Mode, ErrStopTimeout)
	}
	p.logger.Warn("postgres did not stop in time, killing it", "pid", pm.pid, "mode", string(opts.Mode))
	return p.kill(ctx, pm)
}

// Kill SIGKILLs the postmaster and all its children (backends lead their
// own sessions, so the process group alone would miss them) and waits
// until they are gone.
func (p *Postgres) Kill(ctx context.Context) error {
	pm := p.Postmaster()
	if pm == nil || !pm.Running() {
		adopted, err := p.Adopt(ctx)
		if err != nil || !adopted {
			return err
		}
		pm = p.Postmaster()
	}
	p.closeConn()
	return p.kill(ctx, pm)
}

func (p *Postgres) kill(ctx context.Context, pm *Postmaster) error {
	kids := reaper.Children(pm.pid)
	if pm.child {
		_ = killGroup(pm.pid)
	}
	if err := syscall.Kill(pm.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing postgres pid %d: %w", pm.pid, err)
	}
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	timer := time.NewTimer(killWait)
	defer timer.Stop()
	select {
	case <-pm.done:
	case <-ctx.Done():
		return fmt.Errorf("killing postgres pid %d: %w", pm.pid, ctx.Err())
	case <-timer.C:
		return fmt.Errorf("killing postgres pid %d: still running %s after SIGKILL", pm.pid, killWait)
	}
	// The backends must be gone too, or a new postmaster finds the shared
	// memory still in use.
	for _, k := range kids {
		for processAlive(k) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for backend %d to die: %w", k, ctx.Err())
			case <-timer.C:
				return fmt.Errorf("backend %d still running %s after SIGKILL", k, killWait)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// Reload sends SIGHUP to the postmaster so it rereads its configuration.
func (p *Postgres) Reload(ctx context.Context) error {
	pm := p.Postmaster()
	if pm == nil || !pm.Running() {
		return fmt.Errorf("reloading postgres: not running")
	}
	if err := syscall.Kill(pm.pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reloading postgres pid %d: %w", pm.pid, err)
	}
	return nil
}

// Restart stops PostgreSQL with opts and starts it again, waiting up to
// startTimeout for it to accept connections.
func (p *Postgres) Restart(ctx context.Context, opts StopOptions, startTimeout time.Duration) error {
	if err := p.Stop(ctx, opts); err != nil {
		return fmt.Errorf("restarting postgres: %w", err)
	}
	return p.Start(ctx, startTimeout)
}

// Promote runs `pg_ctl promote`. With wait it returns once the server has
// left recovery, up to timeout (0: pg_ctl_timeout); otherwise once the
// postmaster has been told.
func (p *Postgres) Promote(ctx context.Context, wait bool, timeout time.Duration) error {
	if !p.IsRunning() {
		return fmt.Errorf("promoting postgres: not running")
	}
	args := []string{"promote", "-D", p.c().cfg.DataDir}
	if wait {
		t := p.timeoutOr(timeout)
		args = append(args, "-w", "-t", strconv.Itoa(int((t+time.Second-1)/time.Second)))
	} else {
		args = append(args, "-W")
	}
	if _, err := p.output(ctx, p.bin(BinPgCtl), args...); err != nil {
		return fmt.Errorf("promoting postgres: %w", err)
	}
	p.logger.Info("promoted postgres")
	return nil
}

// Adopt takes over a postmaster that runs on the data directory but was
// not started by this value (the agent was restarted): it reads
// postmaster.pid, checks that the pid is a live postmaster of this data
// directory (not a zombie, not a reused pid) and watches it so Exited
// fires when it dies. It reports whether there is such a postmaster. An
// adopted postmaster is stopped by signals like a started one.
func (p *Postgres) Adopt(ctx context.Context) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, ErrClosed
	}
	if p.pm != nil && p.pm.Running() {
		return true, nil
	}
	pid, alive := p.postmasterFromPidFile()
	if !alive {
		return false, nil
	}
	pm := &Postmaster{pid: pid, done: make(chan struct{}), logPath: filepath.Join(p.c().cfg.LogDir, postmasterLogFile)}
	if fi, err := os.Stat(pm.logPath); err == nil {
		pm.logOffset = fi.Size()
	}
	if err := watchExit(pid, pm.done, p.stopWatch, &p.watchers); err != nil {
		return false, fmt.Errorf("adopting postgres pid %d: %w", pid, err)
	}
	p.pm = pm
	p.logger.Info("adopted a running postgres", "pid", pid)
	return true, nil
}

// postmasterFromPidFile reads postmaster.pid and tells whether its pid is
// a live postmaster of this data directory.
func (p *Postgres) postmasterFromPidFile() (int, bool) {
	f, err := os.Open(filepath.Join(p.c().cfg.DataDir, postmasterPidFile))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0, false
	}
	return pid, isPostmasterOf(pid, p.c().cfg.DataDir)
}

// tailFile returns the last n lines after offset.
func tailFile(path string, offset int64, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const maxTail = 64 << 10
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil
	}
	start := offset
	if size-start > maxTail {
		start = size - maxTail
	}
	if start > size {
		start = 0 // the file was replaced (pg_rewind copies log/)
	}
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
