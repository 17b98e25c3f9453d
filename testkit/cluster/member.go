package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Member is one agent with its PostgreSQL, files and ports.
type Member struct {
	c *Cluster
	// Name is node<Index+1>.
	Name  string
	Index int
	// Dir is the member's directory (owned by the agents' user, 0700);
	// DataDir is PostgreSQL's data directory in it.
	Dir, DataDir string
	// ConfigPath and LogPath are the configuration file and the log.
	ConfigPath, LogPath string
	APIPort, PGPort     int

	mu   sync.Mutex
	proc *process
	runs int
}

// process is one run of the agent.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	// state is set when done is closed.
	state *os.ProcessState
}

// Cluster is the cluster m belongs to.
func (m *Member) Cluster() *Cluster { return m.c }

// APIAddr and PGAddr are the loopback addresses of the REST API and of
// PostgreSQL.
func (m *Member) APIAddr() string { return Loopback(m.APIPort) }
func (m *Member) PGAddr() string  { return Loopback(m.PGPort) }

// APIURL is the URL of path on m's REST API.
func (m *Member) APIURL(path string) string { return "http://" + m.APIAddr() + path }

// Config is m's custos configuration before Options.Edit: what every
// cluster needs.
func (m *Member) Config() *Config { return m.ConfigWith(m.c.opts.DCS) }

// ConfigWith is Config with another DCS section (what moving the member to
// another DCS would change).
func (m *Member) ConfigWith(dcsSection DCS) *Config {
	o := m.c.opts
	c := &Config{}
	c.Set("", "scope", o.Scope)
	c.Set("", "namespace", o.Namespace)
	c.Set("", "name", m.Name)
	c.Set("", "plugin_dir", o.PluginDir)
	c.Set("restapi", "listen", m.APIAddr())
	c.Set("restapi", "connect_address", m.APIAddr())
	if o.API != nil {
		for _, section := range []string{"restapi.authentication", "ctl.authentication"} {
			c.Set(section, "username", o.API.Username)
			c.Set(section, "password", o.API.Password)
		}
	}
	dcs := "dcs." + dcsSection.Name
	c.Table(dcs)
	for _, l := range dcsSection.Lines {
		c.Line(dcs, l)
	}
	if o.Timings.TTL > 0 {
		c.Set("bootstrap.dcs", "ttl", o.Timings.TTL)
		c.Set("bootstrap.dcs", "loop_wait", o.Timings.LoopWait)
		c.Set("bootstrap.dcs", "retry_timeout", o.Timings.RetryTimeout)
	}
	c.Set("bootstrap.dcs", "maximum_lag_on_failover", maximumLagOnFailover)
	c.Set("bootstrap.dcs.postgresql", "use_pg_rewind", true)
	c.Set("bootstrap.dcs.postgresql", "use_slots", true)
	c.Set("postgresql", "listen", m.PGAddr())
	c.Set("postgresql", "connect_address", m.PGAddr())
	c.Set("postgresql", "data_dir", m.DataDir)
	c.Set("postgresql", "bin_dir", o.PgBinDir)
	c.Set("postgresql", "pgpass", filepath.Join(m.Dir, "pgpass"))
	roles := []struct {
		name string
		role *Role
	}{{"superuser", &o.Superuser}, {"replication", &o.Replication}, {"rewind", o.Rewind}}
	for _, r := range roles {
		if r.role == nil {
			continue
		}
		section := "postgresql.authentication." + r.name
		c.Set(section, "username", r.role.Username)
		c.Set(section, "password", r.role.Password)
	}
	return c
}

// WriteConfig writes m's configuration file again (after a change to what
// Options.Edit reads, e.g. a member's tags).
func (m *Member) WriteConfig() error {
	o := m.c.opts
	var data []byte
	if o.Render != nil {
		var err error
		if data, err = o.Render(m); err != nil {
			return fmt.Errorf("writing %s's configuration: %w", m.Name, err)
		}
	} else {
		c := m.Config()
		if o.Edit != nil {
			o.Edit(m, c)
		}
		data = c.Bytes()
	}
	if err := os.WriteFile(m.ConfigPath, data, 0o600); err != nil {
		return err
	}
	return m.c.chown(m.ConfigPath)
}

// Start starts the agent; its stdout and stderr are appended to LogPath.
// It runs in a process group of its own (a Ctrl-C in the caller's
// terminal does not reach it, and KillGroup takes its plugins too) and
// gets SIGTERM should the caller die.
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil && !m.proc.exited() {
		return fmt.Errorf("%s: the agent is already running", m.Name)
	}
	m.runs++
	logf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer logf.Close()
	if err := m.c.chown(m.LogPath); err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s: starting the agent (run %d) at %s\n", m.c.opts.Label, m.runs, time.Now().Format(time.RFC3339Nano))
	o := m.c.opts
	var cmd *exec.Cmd
	if o.Command != nil {
		cmd = o.Command(m)
	} else {
		cmd = exec.Command(o.Custos, m.ConfigPath)
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + m.Dir, "TMPDIR=" + m.Dir, "LANG=C.UTF-8"}
	if o.Env != nil {
		env = o.Env(m)
	}
	cmd.Env = append(env, cmd.Env...)
	cmd.Dir = m.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr(o.RunAs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: starting the agent: %w", m.Name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	m.proc = p
	return nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (m *Member) current() *process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Runs is how many times the agent was started.
func (m *Member) Runs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runs
}

// Running reports whether the agent runs.
func (m *Member) Running() bool {
	p := m.current()
	return p != nil && !p.exited()
}

// PID is the pid of the agent's last run, 0 when it was never started.
func (m *Member) PID() int {
	if p := m.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Cmd is the process of the agent's last run (its pid, a signal a test
// sends); nil when it was never started.
func (m *Member) Cmd() *exec.Cmd {
	if p := m.current(); p != nil {
		return p.cmd
	}
	return nil
}

// Done is closed when the agent's last run exits; nil when it was never
// started.
func (m *Member) Done() <-chan struct{} {
	if p := m.current(); p != nil {
		return p.done
	}
	return nil
}

// ExitState is how the last run ended; nil while it runs.
func (m *Member) ExitState() *os.ProcessState {
	p := m.current()
	if p == nil || !p.exited() {
		return nil
	}
	return p.state
}

// Wait waits until the agent's last run exits.
func (m *Member) Wait(ctx context.Context) (*os.ProcessState, error) {
	p := m.current()
	if p == nil {
		return nil, fmt.Errorf("%s: the agent was never started", m.Name)
	}
	select {
	case <-p.done:
		return p.state, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for the agent to exit: %w", m.Name, ctx.Err())
	}
}

// Signal sends sig to the running agent.
func (m *Member) Signal(sig syscall.Signal) error {
	p := m.current()
	if p == nil || p.exited() {
		return fmt.Errorf("%s: no running agent to signal", m.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signalling the agent: %w", m.Name, err)
	}
	return nil
}

// KillGroup SIGKILLs the agent's process group (the agent and its
// plugins, not PostgreSQL, which the agent starts in a group of its own)
// and waits for the agent to exit.
func (m *Member) KillGroup() {
	p := m.current()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop stops the agent gracefully (SIGCONT in case it was stopped, then
// SIGTERM: it stops PostgreSQL and releases the leader key), kills its
// process group when it is still there after timeout, then kills a
// PostgreSQL that outlived it.
func (m *Member) Stop(timeout time.Duration) error {
	if p := m.current(); p != nil && !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(timeout):
			m.c.logf("%s: the agent ignored SIGTERM for %v: killing it", m.Name, timeout)
			m.KillGroup()
		}
	}
	pid, err := m.StopPostgres(0)
	if pid != 0 {
		m.c.logf("%s: postmaster %d outlived its agent: killed it", m.Name, pid)
	}
	return err
}

// postmasterGone bounds the wait for a SIGKILLed postmaster to go.
const postmasterGone = 30 * time.Second

// StopPostgres ends a PostgreSQL that outlived its agent: a fast shutdown
// (SIGINT) given wait to finish (0: none), then SIGKILL of the postmaster
// and its children. It returns the postmaster's pid, 0 when none ran.
func (m *Member) StopPostgres(wait time.Duration) (int, error) {
	pid := m.PostmasterPID()
	if pid == 0 {
		return 0, nil
	}
	// A stopped postmaster would sit on either signal.
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if wait > 0 {
		if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
			return pid, fmt.Errorf("%s: stopping postmaster %d: %w", m.Name, pid, err)
		}
		if waitGone(pid, wait) {
			return pid, nil
		}
	}
	for _, p := range append([]int{pid}, Children(pid)...) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	if !waitGone(pid, postmasterGone) {
		return pid, fmt.Errorf("%s: postmaster %d still alive %v after SIGKILL", m.Name, pid, postmasterGone)
	}
	return pid, nil
}

// waitGone polls until pid is gone or wait passed; it reports whether the
// process is gone.
func waitGone(pid int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for ProcessAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling a process we cannot wait for
	}
	return true
}

// PostmasterPID is the pid of the member's live postmaster, 0 when none
// runs on its data directory.
func (m *Member) PostmasterPID() int { return PostmasterPID(m.DataDir) }

// Tail is the last n lines of m's log.
func (m *Member) Tail(n int) string { return TailFile(m.LogPath, n) }

// TailFile returns the last n lines of a file.
func TailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && len(lines[0]) == 0 {
		return "(empty)\n"
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}
