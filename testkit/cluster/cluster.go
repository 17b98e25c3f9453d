package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/custos-ha/custos/testkit/servers"
)

const (
	// DefaultMembers is a leader and two replicas.
	DefaultMembers = 3
	// defaultNamespace is Patroni's.
	defaultNamespace = "/service"
	// maximumLagOnFailover is Patroni's default (1 MiB), written out so a
	// cluster does not depend on the agent's.
	maximumLagOnFailover = 1048576
	// httpTimeout bounds one REST call of the probes.
	httpTimeout = 3 * time.Second
)

// DCS is the members' DCS section: [dcs.<Name>] with Lines, e.g. Name
// "etcd3" and Lines `hosts = ["127.0.0.1:2379"]`. The caller runs the
// server.
type DCS struct {
	Name  string
	Lines []string
}

// Timings are the HA timings of [bootstrap.dcs], in seconds; loop_wait +
// 2*retry_timeout must not exceed ttl (the agent refuses it otherwise).
type Timings struct{ TTL, LoopWait, RetryTimeout int }

// TTLDuration and LoopWaitDuration are ttl and loop_wait as durations.
func (t Timings) TTLDuration() time.Duration      { return time.Duration(t.TTL) * time.Second }
func (t Timings) LoopWaitDuration() time.Duration { return time.Duration(t.LoopWait) * time.Second }

// Role is a user name and its password.
type Role struct{ Username, Password string }

// Options shape a cluster. Scope, Dir, Custos (or Command), PluginDir,
// PgBinDir, DCS, Superuser and Replication are required unless Render
// writes the whole configuration.
type Options struct {
	// Scope is the cluster's name; Namespace defaults to "/service".
	Scope, Namespace string
	// Members is the number of members (default DefaultMembers), named
	// node1, node2, ...
	Members int
	// Dir holds one directory per member (it must exist); the caller
	// removes it.
	Dir string
	// Custos is the agent binary, PluginDir its plugin directory and
	// PgBinDir PostgreSQL's bin directory.
	Custos, PluginDir, PgBinDir string
	DCS                         DCS
	// Timings are written when TTL is set; else the agent's defaults hold.
	Timings Timings
	// Superuser and Replication are PostgreSQL's roles; Rewind, when set,
	// is the pg_rewind role.
	Superuser, Replication Role
	Rewind                 *Role
	// API, when set, guards the REST API's unsafe methods
	// ([restapi.authentication]) and gives the agents and custosctl the
	// same credentials ([ctl.authentication]).
	API *Role
	// RunAs runs the agents (and so PostgreSQL) under these credentials;
	// nil runs them as the caller. The member directories, configurations
	// and logs are handed to that user.
	RunAs *syscall.Credential

	// Edit changes a member's configuration before it is written (extra
	// keys, tables, replaced values). It is called on every write.
	Edit func(m *Member, c *Config)
	// Render, when set, writes the member's whole configuration instead
	// (another agent than custos); Edit is then not called.
	Render func(m *Member) ([]byte, error)
	// Command is the agent process of m, not started; default: Custos
	// with m's configuration file. Its Env is added to Env's.
	Command func(m *Member) *exec.Cmd
	// Env is the agents' environment; default: PATH, LANG and HOME and
	// TMPDIR in the member's directory, nothing from the caller (CUSTOS_*
	// variables would override the files).
	Env func(m *Member) []string
	// ConfigPath and LogPath place a member's configuration file and log
	// (the agent's stdout and stderr, appended across runs); default:
	// custos.toml and custos.log in the member's directory.
	ConfigPath, LogPath func(m *Member) string
	// Label starts the line written to a member's log at each start
	// ("=== <label>: starting the agent ...").
	Label string
	// Logf reports what Stop had to force (an agent killed, a PostgreSQL
	// that outlived its agent); nil discards it.
	Logf func(format string, args ...any)
}

// Cluster is the members of one cluster.
type Cluster struct {
	opts    Options
	Members []*Member
}

// New creates the members' directories and configurations; Start starts
// the agents.
func New(o Options) (*Cluster, error) {
	if o.Members == 0 {
		o.Members = DefaultMembers
	}
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.Label == "" {
		o.Label = "cluster"
	}
	if o.Scope == "" || o.Dir == "" {
		return nil, errors.New("cluster options: Scope and Dir are required")
	}
	if o.Render == nil && (o.Custos == "" && o.Command == nil || o.PluginDir == "" || o.PgBinDir == "" || o.DCS.Name == "") {
		return nil, errors.New("cluster options: Custos, PluginDir, PgBinDir and DCS are required")
	}
	ports, err := FreePorts(2 * o.Members)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: o}
	for i := range o.Members {
		name := "node" + strconv.Itoa(i+1)
		m := &Member{
			c: c, Name: name, Index: i,
			Dir:     filepath.Join(o.Dir, name),
			APIPort: ports[2*i], PGPort: ports[2*i+1],
		}
		m.DataDir = filepath.Join(m.Dir, "data")
		m.ConfigPath = filepath.Join(m.Dir, "custos.toml")
		if o.ConfigPath != nil {
			m.ConfigPath = o.ConfigPath(m)
		}
		m.LogPath = filepath.Join(m.Dir, "custos.log")
		if o.LogPath != nil {
			m.LogPath = o.LogPath(m)
		}
		if err := os.Mkdir(m.Dir, 0o700); err != nil {
			return nil, err
		}
		if err := c.chown(m.Dir); err != nil {
			return nil, err
		}
		if err := m.WriteConfig(); err != nil {
			return nil, err
		}
		c.Members = append(c.Members, m)
	}
	return c, nil
}

// Options are the options the cluster was made with, defaults filled in.
func (c *Cluster) Options() Options { return c.opts }

// Member is the member called name, nil when there is none.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Start starts every agent.
func (c *Cluster) Start() error {
	for _, m := range c.Members {
		if err := m.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops every member at once (see Member.Stop).
func (c *Cluster) Stop(timeout time.Duration) error {
	errs := make([]error, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.Stop(timeout) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) chown(path string) error {
	if c.opts.RunAs == nil {
		return nil
	}
	if err := os.Chown(path, int(c.opts.RunAs.Uid), int(c.opts.RunAs.Gid)); err != nil {
		return fmt.Errorf("handing %s to uid %d: %w", path, c.opts.RunAs.Uid, err)
	}
	return nil
}

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf(format, args...)
	}
}

// Leader is the member whose REST API says it is the primary (GET /primary
// answers 200); an error when none or more than one does.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	var leaders []*Member
	for _, m := range c.Members {
		if code, _, err := m.Get(ctx, "/primary"); err == nil && code == http.StatusOK {
			leaders = append(leaders, m)
		}
	}
	switch len(leaders) {
	case 1:
		return leaders[0], nil
	case 0:
		return nil, errors.New("no member answers 200 on /primary")
	default:
		return nil, fmt.Errorf("%d members answer 200 on /primary", len(leaders))
	}
}

// Healthy returns the leader when every agent runs, one member answers
// 200 on /primary and every other 200 on /replica (a running replica).
func (c *Cluster) Healthy(ctx context.Context) (*Member, error) {
	for _, m := range c.Members {
		if !m.Running() {
			return nil, fmt.Errorf("%s: the agent is not running", m.Name)
		}
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range c.Members {
		if m == leader {
			continue
		}
		if code, _, err := m.Get(ctx, "/replica"); err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("%s: GET /replica: %d %v", m.Name, code, err)
		}
	}
	return leader, nil
}

// Get sends GET path to m's REST API and returns the status and body.
func (m *Member) Get(ctx context.Context, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL(path), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// FreePorts returns n loopback ports that were free a moment ago, none
// handed out before by this process (servers.FreePorts).
func FreePorts(n int) ([]int, error) { return servers.FreePorts(n) }

// Loopback is 127.0.0.1:port.
func Loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
