package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/poll"
	"github.com/custos-ha/custos/testkit/servers"
)

// Credentials of the clusters under test.
const (
	superuser       = "postgres"
	superuserPass   = "chaos-secret"
	replicationUser = "replicator"
	replicationPass = "chaos-rep-secret"
)

// The HA timings of every cluster: ttl 10 s, loop_wait 1 s, retry_timeout
// 4 s (loop_wait + 2*retry_timeout <= ttl), the fast profile of
// docs/benchmarks.md: a fault costs seconds, not half a minute.
var timings = tkcluster.Timings{TTL: 10, LoopWait: 1, RetryTimeout: 4}

// watchdogSafetyMargin is [watchdog] safety_margin: the fencing process
// kills the postmaster this many seconds before the leader key expires.
const watchdogSafetyMargin = 3

const (
	// etcdMembers is the size of the etcd cluster: the smallest that
	// survives the loss of one member.
	etcdMembers = 3
	// etcdHeartbeat and etcdElection are etcd's defaults: the agents see
	// the DCS they would see in production.
	etcdHeartbeat = 100 * time.Millisecond
	etcdElection  = time.Second
)

// Deadlines of the waits: they bound how long a broken cluster can hang a
// run; none of them is a measurement.
const (
	formTimeout   = 3 * time.Minute
	convergeLimit = 3 * time.Minute
	stopTimeout   = 30 * time.Second
	sqlTimeout    = 2 * time.Second
)

// env is what every cluster shares.
type env struct {
	custos, pluginDir, pgBinDir, etcdBin string
	// cred runs agents (and so PostgreSQL) as the postgres user when the
	// suite runs as root; nil runs them as the current user.
	cred *syscall.Credential
	// root holds the clusters' directories.
	root string
	keep bool
	logf func(format string, args ...any)
}

// newEnv checks the binaries and makes the root directory.
func newEnv(binDir, pgBinDir, etcdBin, workDir string, keep bool, logf func(string, ...any)) (*env, error) {
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	e := &env{
		custos: filepath.Join(abs, "custos"), pluginDir: filepath.Join(abs, "plugins"),
		pgBinDir: pgBinDir, etcdBin: etcdBin, keep: keep, logf: logf,
	}
	var problems []string
	for _, need := range []struct{ path, hint string }{
		{e.custos, "run make build, or pass -bin"},
		{filepath.Join(e.pluginDir, "custos-plugin-dcs-etcd3"), "run make build, or pass -bin"},
		{filepath.Join(pgBinDir, "postgres"), "install PostgreSQL 15 (apt-get install postgresql-15) or pass -pg-bin-dir"},
	} {
		if _, err := os.Stat(need.path); err != nil {
			problems = append(problems, fmt.Sprintf("%s not found: %s", need.path, need.hint))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n  "))
	}
	if os.Getuid() == 0 {
		if e.cred, err = tkcluster.UserCredential(tkcluster.PostgresUser); err != nil {
			return nil, err
		}
	}
	if workDir == "" {
		workDir = servers.TempRoot()
	}
	if e.root, err = os.MkdirTemp(workDir, "custos-chaos-"); err != nil {
		return nil, err
	}
	// Everything below is reached by the agents' user.
	if err := os.Chmod(e.root, 0o755); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if !e.keep {
		_ = os.RemoveAll(e.root)
	}
}

// defaultPgBinDir is the newest PostgreSQL of Debian's layout.
func defaultPgBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestMajor := "/usr/lib/postgresql/15/bin", 0
	for _, d := range dirs {
		if n, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil && n > bestMajor {
			best, bestMajor = d, n
		}
	}
	return best
}

// clusterOpts shape one cluster.
type clusterOpts struct {
	// noWatchdog runs the agents with [watchdog] mode off; else the
	// process watchdog is required.
	noWatchdog bool
}

// cluster is three custos members, each reaching every etcd member
// through a proxy of its own: member -> etcd links can be cut or slowed one
// by one.
type cluster struct {
	env   *env
	name  string
	dir   string
	etcd  *servers.EtcdCluster
	links map[string][]*servers.Proxy // member name -> one proxy per etcd member
	// peers are the proxies in front of each member's PostgreSQL and REST
	// API, which the other members reach it through (links.go).
	peers map[string]*peerLinks
	h     *tkcluster.Cluster
}

// newCluster starts etcd and the proxies and writes the members'
// configurations; start starts the agents.
func newCluster(e *env, name string, o clusterOpts) (_ *cluster, err error) {
	dir, err := os.MkdirTemp(e.root, name+"-")
	if err != nil {
		return nil, err
	}
	if e.cred != nil {
		if err := os.Chown(dir, int(e.cred.Uid), int(e.cred.Gid)); err != nil {
			return nil, err
		}
	}
	c := &cluster{env: e, name: name, dir: dir, links: map[string][]*servers.Proxy{}, peers: map[string]*peerLinks{}}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	c.etcd, err = servers.StartEtcdCluster(servers.EtcdConfig{
		Bin: e.etcdBin, Dir: filepath.Join(dir, "etcd"), Name: "chaos",
		Heartbeat: etcdHeartbeat, Election: etcdElection,
	}, etcdMembers)
	if err != nil {
		return nil, err
	}
	const members = 3
	for i := range members {
		node := "node" + strconv.Itoa(i+1)
		for _, ep := range c.etcd.Endpoints() {
			p, err := servers.StartProxy("127.0.0.1:0", ep)
			if err != nil {
				return nil, err
			}
			c.links[node] = append(c.links[node], p)
		}
	}
	var linkErr error
	c.h, err = tkcluster.New(tkcluster.Options{
		Scope: name, Members: members, Dir: dir, Label: "chaos",
		Custos: e.custos, PluginDir: e.pluginDir, PgBinDir: e.pgBinDir,
		DCS:         tkcluster.DCS{Name: "etcd3"},
		Timings:     timings,
		Superuser:   tkcluster.Role{Username: superuser, Password: superuserPass},
		Replication: tkcluster.Role{Username: replicationUser, Password: replicationPass},
		RunAs:       e.cred,
		Logf:        e.logf,
		Edit: func(m *tkcluster.Member, cfg *tkcluster.Config) {
			var hosts []string
			for _, p := range c.links[m.Name] {
				hosts = append(hosts, p.Addr)
			}
			cfg.Set("dcs.etcd3", "hosts", hosts)
			// The ports are known now: the peer proxies start with the
			// first configuration.
			if c.peers[m.Name] == nil {
				l, err := c.startPeerLinks(m.PGAddr(), m.APIAddr())
				if err != nil {
					linkErr = errors.Join(linkErr, err)
					return
				}
				c.peers[m.Name] = l
			}
			cfg.Set("postgresql", "connect_address", c.peers[m.Name].pg.Addr)
			cfg.Set("restapi", "connect_address", c.peers[m.Name].api.Addr)
			cfg.Set("bootstrap.dcs", "synchronous_mode", true)
			params := "bootstrap.dcs.postgresql.parameters"
			cfg.Set(params, "wal_keep_size", "128MB")
			cfg.Set(params, "max_connections", 40)
			cfg.Set("postgresql.parameters", "shared_buffers", "16MB")
			if o.noWatchdog {
				cfg.Set("watchdog", "mode", "off")
			} else {
				cfg.Set("watchdog", "mode", "required")
				cfg.Set("watchdog", "driver", "process")
				cfg.Set("watchdog", "safety_margin", watchdogSafetyMargin)
			}
		},
	})
	if err == nil {
		err = linkErr
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// proxies are every member -> etcd proxy of the members named (all when
// none is).
func (c *cluster) proxies(names ...string) []*servers.Proxy {
	var out []*servers.Proxy
	for name, ps := range c.links {
		if len(names) == 0 || slices.Contains(names, name) {
			out = append(out, ps...)
		}
	}
	return out
}

// close stops the agents (links restored, etcd thawed, so that they stop
// cleanly), etcd and the proxies, and removes the files unless kept.
func (c *cluster) close() {
	for _, p := range c.proxies() {
		p.SetLatency(0)
		p.Resume()
	}
	for _, l := range c.peers {
		for from := range c.peers {
			l.pg.ResumeFrom(from)
			l.api.ResumeFrom(from)
		}
	}
	if c.etcd != nil {
		for _, m := range c.etcd.Members {
			_ = m.Thaw()
		}
	}
	if c.h != nil {
		if err := c.h.Stop(stopTimeout); err != nil {
			c.env.logf("%s: %v", c.name, err)
		}
	}
	for _, ps := range c.links {
		for _, p := range ps {
			p.Close()
		}
	}
	for _, l := range c.peers {
		l.pg.Close()
		l.api.Close()
	}
	if c.etcd != nil {
		c.etcd.Stop()
	}
	if c.env.keep {
		c.env.logf("kept %s", c.dir)
		return
	}
	_ = os.RemoveAll(c.dir)
}

// start starts the agents, waits for a whole cluster and creates the
// tables of the writer and the sampler.
func (c *cluster) start(ctx context.Context) error {
	if err := c.h.Start(); err != nil {
		return err
	}
	leader, err := c.waitHealthy(ctx, formTimeout)
	if err != nil {
		return err
	}
	conn, err := connect(ctx, leader)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, sql := range []string{
		"create table if not exists " + ackTable + " (id bigint primary key)",
		// Unlogged: the sampler's inserts write no WAL, so they never
		// wait for a synchronous standby; they ask whether the server
		// takes writes, not whether they are replicated.
		"create unlogged table if not exists " + probeTable + " (at timestamptz default now())",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %s: %w", leader.Name, sql, err)
		}
	}
	return nil
}

// health is nil when the cluster is whole: every agent runs, one member
// answers 200 on /primary and the others 200 on /replica, PostgreSQL on
// the leader streams to every other member, and the DCS names one of them
// the synchronous standby (only it may take over). It returns the leader.
func (c *cluster) health(ctx context.Context) (*tkcluster.Member, error) {
	leader, err := c.h.Healthy(ctx)
	if err != nil {
		return nil, err
	}
	var streaming int
	if err := queryRow(ctx, leader, "select count(*) from pg_stat_replication where state = 'streaming'", &streaming); err != nil {
		return nil, err
	}
	if streaming != len(c.h.Members)-1 {
		return nil, fmt.Errorf("%s streams to %d replicas", leader.Name, streaming)
	}
	if _, err := syncStandby(ctx, leader); err != nil {
		return nil, err
	}
	return leader, nil
}

// syncStandby names the synchronous standby of the leader's GET /cluster
// (the DCS's /sync key).
func syncStandby(ctx context.Context, leader *tkcluster.Member) (string, error) {
	code, body, err := leader.Get(ctx, "/cluster")
	if err != nil || code != http.StatusOK {
		return "", fmt.Errorf("%s: GET /cluster: %d %v", leader.Name, code, err)
	}
	var info struct {
		Members []struct{ Name, Role, State string }
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return "", fmt.Errorf("%s: GET /cluster: %w", leader.Name, err)
	}
	for _, m := range info.Members {
		if m.Role == "sync_standby" && (m.State == "streaming" || m.State == "running") {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("%s: GET /cluster names no streaming synchronous standby", leader.Name)
}

// waitHealthy polls health until it is nil or timeout passes.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) (*tkcluster.Member, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%s not whole after %v", c.name, timeout))
	defer cancel()
	var leader *tkcluster.Member
	err := poll.Until(ctx, func(ctx context.Context) error {
		var err error
		leader, err = c.health(ctx)
		return err
	})
	return leader, err
}

// dsn is the connection string of one member.
func dsn(m *tkcluster.Member) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d",
		m.PGPort, superuser, superuserPass, int(sqlTimeout/time.Second))
}

// clusterDSN is the multi-host connection string of the cluster: a client
// that asks for target_session_attrs=read-write connects to whichever
// member says it takes writes, as most applications do.
func (c *cluster) clusterDSN() string {
	var hosts, ports []string
	for _, m := range c.h.Members {
		hosts = append(hosts, "127.0.0.1")
		ports = append(ports, strconv.Itoa(m.PGPort))
	}
	return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=postgres sslmode=disable connect_timeout=%d target_session_attrs=read-write",
		strings.Join(hosts, ","), strings.Join(ports, ","), superuser, superuserPass, int(sqlTimeout/time.Second))
}

func connect(ctx context.Context, m *tkcluster.Member) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn(m))
	if err != nil {
		return nil, fmt.Errorf("%s: connecting: %w", m.Name, err)
	}
	return conn, nil
}

// queryRow runs one statement on m's PostgreSQL and scans one row.
func queryRow(ctx context.Context, m *tkcluster.Member, sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(ctx, sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn(m))
	if err != nil {
		return fmt.Errorf("%s: connecting: %w", m.Name, err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %s: %w", m.Name, sql, err)
	}
	return nil
}

// killNode SIGKILLs everything of a member at once, as a lost machine
// stops: the agent and its plugins, its fencing process, the postmaster and
// its children. It waits until they are gone.
func killNode(m *tkcluster.Member) error {
	var pids []int
	if m.Running() {
		pids = append(pids, descendants(m.PID())...)
	}
	if pm := m.PostmasterPID(); pm != 0 && !slices.Contains(pids, pm) {
		pids = append(pids, descendants(pm)...)
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	if m.Running() {
		m.KillGroup()
	}
	deadline := time.Now().Add(stopTimeout)
	for _, p := range pids {
		for tkcluster.ProcessAlive(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: process %d still alive %v after SIGKILL", m.Name, p, stopTimeout)
			}
			time.Sleep(5 * time.Millisecond) // a killed process is gone within milliseconds
		}
	}
	return nil
}

// descendants is pid and every live process below it.
func descendants(pid int) []int {
	out := []int{pid}
	for _, c := range tkcluster.Children(pid) {
		out = append(out, descendants(c)...)
	}
	return out
}

// currentUser names who runs the suite, for the report.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}
