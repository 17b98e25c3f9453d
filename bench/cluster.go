package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/core/reaper"
)

// Credentials of the clusters under test.
const (
	superuser       = "postgres"
	superuserPass   = "bench-secret"
	replicationUser = "replicator"
	replicationPass = "bench-rep-secret"
)

// Deadlines of the waits: they bound how long a broken cluster can hang the
// run; none of them is a measurement.
const (
	formTimeout    = 3 * time.Minute
	healthyTimeout = 3 * time.Minute
	stopTimeout    = 30 * time.Second
	httpTimeout    = 2 * time.Second
	sqlTimeout     = 2 * time.Second
	pollInterval   = 100 * time.Millisecond
)

// profile is one set of the timings both agents get.
type profile struct {
	name                        string
	ttl, loopWait, retryTimeout int
}

func (p profile) String() string {
	return fmt.Sprintf("%s (ttl %d, loop_wait %d, retry_timeout %d)", p.name, p.ttl, p.loopWait, p.retryTimeout)
}

// system is one HA agent under test.
type system interface {
	// label names it in the table.
	label() string
	// writeConfig writes m's configuration file.
	writeConfig(m *member) error
	// command is m's agent process, not started.
	command(m *member) *exec.Cmd
}

// runEnv is what every cluster shares.
type runEnv struct {
	// cred runs agents (and so PostgreSQL) as the postgres user when the
	// bench runs as root; nil runs them as the current user.
	cred     *syscall.Credential
	pgBinDir string
	etcdBin  string
	root     string
	keep     bool
	logf     func(format string, args ...any)
}

// cluster is three members of one system with their own etcd.
type cluster struct {
	env     *runEnv
	sys     system
	prof    profile
	scope   string
	dir     string
	etcd    *etcdServer
	members []*member
}

// member is one agent with its PostgreSQL.
type member struct {
	c                   *cluster
	name                string
	dir, dataDir        string
	configPath, logPath string
	apiPort, pgPort     int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// newCluster creates the directories, the etcd and the configuration of a
// three-member cluster; start starts the agents.
func newCluster(env *runEnv, sys system, prof profile) (*cluster, error) {
	scope := fmt.Sprintf("bench-%s-%s", strings.ToLower(sys.label()), prof.name)
	dir, err := os.MkdirTemp(env.root, scope+"-")
	if err != nil {
		return nil, err
	}
	if err := env.chown(dir); err != nil {
		return nil, err
	}
	c := &cluster{env: env, sys: sys, prof: prof, scope: scope, dir: dir}
	if c.etcd, err = startEtcd(env.etcdBin, filepath.Join(dir, "etcd")); err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		c.close()
		return nil, err
	}
	for i := range 3 {
		name := fmt.Sprintf("node%d", i+1)
		mdir := filepath.Join(dir, name)
		if err := os.Mkdir(mdir, 0o700); err != nil {
			c.close()
			return nil, err
		}
		if err := env.chown(mdir); err != nil {
			c.close()
			return nil, err
		}
		m := &member{
			c: c, name: name, dir: mdir,
			dataDir:    filepath.Join(mdir, "data"),
			configPath: filepath.Join(mdir, "config"),
			logPath:    filepath.Join(mdir, "agent.log"),
			apiPort:    ports[2*i], pgPort: ports[2*i+1],
		}
		if err := sys.writeConfig(m); err != nil {
			c.close()
			return nil, fmt.Errorf("writing %s's configuration: %w", name, err)
		}
		if err := env.chown(m.configPath); err != nil {
			c.close()
			return nil, err
		}
		c.members = append(c.members, m)
	}
	return c, nil
}

func (env *runEnv) chown(path string) error {
	if env.cred == nil {
		return nil
	}
	return os.Chown(path, int(env.cred.Uid), int(env.cred.Gid))
}

// prefix is the cluster's key prefix in etcd (Patroni's layout).
func (c *cluster) prefix() string { return "/service/" + c.scope + "/" }

// close stops the agents and etcd, and removes the files unless kept.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Go(m.stop)
	}
	wg.Wait()
	if c.etcd != nil {
		c.etcd.stop()
	}
	if c.env.keep {
		c.env.logf("kept %s", c.dir)
		return
	}
	_ = os.RemoveAll(c.dir)
}

func (c *cluster) member(name string) *member {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	return nil
}

// start starts every agent and waits for a leader and two streaming
// replicas.
func (c *cluster) start(ctx context.Context) (*member, error) {
	for _, m := range c.members {
		if err := m.start(); err != nil {
			return nil, err
		}
	}
	return c.waitHealthy(ctx, formTimeout)
}

// health is nil when the cluster is whole: the leader key names a member
// whose /primary says 200, the two others answer 200 on /replica, and
// PostgreSQL on the leader streams to both. It returns the leader.
func (c *cluster) health(ctx context.Context) (*member, error) {
	name, _, err := c.etcd.leaderKey(ctx, c.prefix())
	if err != nil {
		return nil, err
	}
	leader := c.member(name)
	if leader == nil {
		return nil, fmt.Errorf("leader key holds %q", name)
	}
	for _, m := range c.members {
		if !m.running() {
			return nil, fmt.Errorf("%s: the agent is not running", m.name)
		}
		path := "/replica"
		if m == leader {
			path = "/primary"
		}
		if code, err := httpGet(ctx, m.apiURL(path)); err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("%s: GET %s: %d %v", m.name, path, code, err)
		}
	}
	n, err := leader.streamingReplicas(ctx)
	if err != nil {
		return nil, err
	}
	if n != len(c.members)-1 {
		return nil, fmt.Errorf("%s streams to %d replicas", leader.name, n)
	}
	return leader, nil
}

// waitHealthy polls health until it is nil.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) (*member, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		leader, err := c.health(ctx)
		if err == nil {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s cluster not whole after %v: %w", c.sys.label(), timeout, err)
		case <-time.After(pollInterval):
		}
	}
}

// leader is the member the leader key names, nil when none.
func (c *cluster) leader(ctx context.Context) *member {
	name, _, err := c.etcd.leaderKey(ctx, c.prefix())
	if err != nil {
		return nil
	}
	return c.member(name)
}

// dsn is the multi-host connection string of the cluster: libpq's
// target_session_attrs=read-write finds the primary.
func (c *cluster) dsn() string {
	var hosts, ports []string
	for _, m := range c.members {
		hosts = append(hosts, "127.0.0.1")
		ports = append(ports, strconv.Itoa(m.pgPort))
	}
	return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d target_session_attrs=read-write",
		strings.Join(hosts, ","), strings.Join(ports, ","), superuser, superuserPass, int(sqlTimeout/time.Second))
}

func (m *member) dsn() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d",
		m.pgPort, superuser, superuserPass, int(sqlTimeout/time.Second))
}

func (m *member) apiURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", m.apiPort, path)
}

// query runs one statement on m's PostgreSQL and scans one row.
func (m *member) query(ctx context.Context, sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, m.dsn())
	if err != nil {
		return fmt.Errorf("%s: connecting: %w", m.name, err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %s: %w", m.name, sql, err)
	}
	return nil
}

func (m *member) streamingReplicas(ctx context.Context) (int, error) {
	var n int
	err := m.query(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", &n)
	return n, err
}

// start starts the agent; its output is appended to the member's log.
func (m *member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== bench: starting the agent at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := m.c.sys.command(m)
	cmd.Dir = m.dir
	cmd.Env = append(cmd.Env, "PATH=/usr/local/bin:/usr/bin:/bin", "HOME="+m.dir, "TMPDIR="+m.dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8")
	cmd.Stdout, cmd.Stderr = logf, logf
	// The agents shut down (and stop PostgreSQL) when the bench dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: m.c.env.cred, Pdeathsig: syscall.SIGTERM}
	// Its own process group: SIGKILL of the group is the agent with its
	// plugins, as when a node's agent service is killed.
	reaper.Prepare(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: starting the agent: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	m.cmd, m.done = cmd, done
	return nil
}

func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// agentPID is the agent's pid, 0 when it does not run.
func (m *member) agentPID() int {
	if !m.running() {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd.Process.Pid
}

// killAgent SIGKILLs the agent's process group and waits for its exit.
func (m *member) killAgent() error {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s: no agent to kill", m.name)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s: the agent outlived SIGKILL by %v", m.name, stopTimeout)
	}
}

// postmasterTree is the live postmaster and its children.
func (m *member) postmasterTree() []int {
	pm := postmasterPID(m.dataDir)
	if pm == 0 {
		return nil
	}
	return append([]int{pm}, children(pm)...)
}

// stop stops the agent with SIGTERM (it stops PostgreSQL) and kills what is
// left after stopTimeout, PostgreSQL included.
func (m *member) stop() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if pids := m.postmasterTree(); len(pids) > 0 {
		_ = killNow(pids, stopTimeout)
	}
}

func httpGet(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

var portsTaken struct {
	sync.Mutex
	m map[int]bool
}

// freePorts returns n loopback ports free a moment ago, none handed out
// before by this process.
func freePorts(n int) ([]int, error) {
	portsTaken.Lock()
	defer portsTaken.Unlock()
	if portsTaken.m == nil {
		portsTaken.m = map[int]bool{}
	}
	var out []int
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		defer l.Close()
		if p := l.Addr().(*net.TCPAddr).Port; !portsTaken.m[p] {
			portsTaken.m[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}
