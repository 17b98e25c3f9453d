package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
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
	// configure tells the cluster harness how to write a member's
	// configuration and start its agent.
	configure(o *tkcluster.Options, c *cluster)
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
	h       *tkcluster.Cluster
	members []*member
}

// member is one agent with its PostgreSQL, as the harness runs it.
type member struct {
	*tkcluster.Member
	c *cluster
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
	o := tkcluster.Options{
		Scope: scope, Members: 3, Dir: dir, Label: "bench",
		PgBinDir:    env.pgBinDir,
		DCS:         tkcluster.DCS{Name: "etcd3", Lines: []string{"hosts = " + tkcluster.TOMLValue([]string{c.etcd.endpoint})}},
		Timings:     tkcluster.Timings{TTL: prof.ttl, LoopWait: prof.loopWait, RetryTimeout: prof.retryTimeout},
		Superuser:   tkcluster.Role{Username: superuser, Password: superuserPass},
		Replication: tkcluster.Role{Username: replicationUser, Password: replicationPass},
		RunAs:       env.cred,
		ConfigPath:  func(m *tkcluster.Member) string { return filepath.Join(m.Dir, "config") },
		LogPath:     func(m *tkcluster.Member) string { return filepath.Join(m.Dir, "agent.log") },
		Env: func(m *tkcluster.Member) []string {
			return []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + m.Dir, "TMPDIR=" + m.Dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
		},
	}
	sys.configure(&o, c)
	if c.h, err = tkcluster.New(o); err != nil {
		c.close()
		return nil, err
	}
	for _, m := range c.h.Members {
		c.members = append(c.members, &member{Member: m, c: c})
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
	if c.h != nil {
		_ = c.h.Stop(stopTimeout)
	}
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
		if m.Name == name {
			return m
		}
	}
	return nil
}

// start starts every agent and waits for a leader and two streaming
// replicas.
func (c *cluster) start(ctx context.Context) (*member, error) {
	if err := c.h.Start(); err != nil {
		return nil, err
	}
	return c.waitHealthy(ctx, formTimeout)
}

// health is nil when the cluster is whole: the harness finds one member
// answering 200 on /primary and the others on /replica, the leader key
// names that member, and PostgreSQL on the leader streams to both others.
// It returns the leader.
func (c *cluster) health(ctx context.Context) (*member, error) {
	primary, err := c.h.Healthy(ctx)
	if err != nil {
		return nil, err
	}
	name, _, err := c.etcd.leaderKey(ctx, c.prefix())
	if err != nil {
		return nil, err
	}
	leader := c.member(name)
	if leader == nil || leader.Member != primary {
		return nil, fmt.Errorf("leader key holds %q, %s answers /primary", name, primary.Name)
	}
	n, err := leader.streamingReplicas(ctx)
	if err != nil {
		return nil, err
	}
	if n != len(c.members)-1 {
		return nil, fmt.Errorf("%s streams to %d replicas", leader.Name, n)
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
		ports = append(ports, strconv.Itoa(m.PGPort))
	}
	return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d target_session_attrs=read-write",
		strings.Join(hosts, ","), strings.Join(ports, ","), superuser, superuserPass, int(sqlTimeout/time.Second))
}

func (m *member) dsn() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d",
		m.PGPort, superuser, superuserPass, int(sqlTimeout/time.Second))
}

// query runs one statement on m's PostgreSQL and scans one row.
func (m *member) query(ctx context.Context, sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, m.dsn())
	if err != nil {
		return fmt.Errorf("%s: connecting: %w", m.Name, err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %s: %w", m.Name, sql, err)
	}
	return nil
}

func (m *member) streamingReplicas(ctx context.Context) (int, error) {
	var n int
	err := m.query(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", &n)
	return n, err
}

// agentPID is the agent's pid, 0 when it does not run.
func (m *member) agentPID() int {
	if !m.Running() {
		return 0
	}
	return m.PID()
}

// killAgent SIGKILLs the agent's process group and waits for its exit.
func (m *member) killAgent() error {
	if m.PID() == 0 {
		return fmt.Errorf("%s: no agent to kill", m.Name)
	}
	done := make(chan struct{})
	go func() {
		m.KillGroup()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s: the agent outlived SIGKILL by %v", m.Name, stopTimeout)
	}
}

// postmasterTree is the live postmaster and its children.
func (m *member) postmasterTree() []int {
	pm := m.PostmasterPID()
	if pm == 0 {
		return nil
	}
	return append([]int{pm}, tkcluster.Children(pm)...)
}

// freePorts returns n loopback ports free a moment ago, none handed out
// before by this process (the harness's, shared with the clusters' ports).
func freePorts(n int) ([]int, error) { return tkcluster.FreePorts(n) }
