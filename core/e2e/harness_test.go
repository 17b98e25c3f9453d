//go:build integration

package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

// The dynamic configuration of every cluster under test: Patroni's minimum
// ttl (custos refuses less) and a short loop, so that a failure that waits
// for the timer rather than the watch shows up as a slow test and in the
// logged triggers.
const (
	ttl          = 20 * time.Second
	loopWait     = 2
	retryTimeout = 5
)

// Passwords of the clusters under test.
const (
	superuser       = "postgres"
	superuserPass   = "secret"
	replicationUser = "replicator"
	replicationPass = "rep-secret"
	// apiUser and apiPassword guard the REST API's unsafe methods of
	// clusters started with clusterOpts.auth.
	apiUser     = "operator"
	apiPassword = "op-secret"
)

// Deadlines of the waits. They bound how long a broken agent can hang a
// test; none of them is an assertion on speed.
const (
	pollInterval = 200 * time.Millisecond
	// formTimeout covers initdb and two pg_basebackups on a busy machine.
	formTimeout = 3 * time.Minute
	// failoverTimeout covers a lease expiry (ttl) and a promotion.
	failoverTimeout = ttl + time.Minute
	// stopTimeout bounds a graceful agent shutdown (fast stop of
	// PostgreSQL and the leader key release).
	stopTimeout = 30 * time.Second
	// httpTimeout bounds one REST call; sqlTimeout one SQL connection and
	// query.
	httpTimeout = 3 * time.Second
	sqlTimeout  = 3 * time.Second
	// guardSample is the interval of the two-primaries guard's samples and
	// guardTimeout bounds each: a server that does not answer at once is
	// not counted (it is not accepting writes either).
	guardSample  = 250 * time.Millisecond
	guardTimeout = time.Second
)

// clusterOpts shape a cluster under test.
type clusterOpts struct {
	// members is the number of agents (default 3).
	members int
	// bootstrapDCS are extra lines for [bootstrap.dcs], e.g.
	// "primary_start_timeout = 5".
	bootstrapDCS []string
	// pgParameters are extra lines for
	// [bootstrap.dcs.postgresql.parameters], e.g. `wal_level = "logical"`.
	pgParameters []string
	// edit changes a member's settings before its configuration file is
	// written.
	edit func(m *member)
	// noStart writes the configurations without starting the agents.
	noStart bool
	// auth turns on basic authentication of the REST API's unsafe methods
	// ([restapi.authentication], with apiUser and apiPassword) and gives
	// the agents and patronictl the same credentials ([ctl]).
	auth bool
	// timings replaces the default ttl, loop_wait and retry_timeout of
	// [bootstrap.dcs] when set: a test that waits for many lease expiries
	// runs its cluster on short ones.
	timings *timings
	// dcs runs the cluster on another DCS than the shared etcd: it gives
	// each member's [dcs.<name>] section in place of [dcs.etcd3], the rest
	// of the configuration unchanged, and reads the cluster's state.
	dcs dcsServer
}

// timings are the HA timings of a cluster, in seconds; loopWait +
// 2*retryTimeout must not exceed ttl.
type timings struct{ ttl, loopWait, retryTimeout int }

// ttlDuration and loopWaitDuration are ttl and loop_wait as durations.
func (tm timings) ttlDuration() time.Duration      { return time.Duration(tm.ttl) * time.Second }
func (tm timings) loopWaitDuration() time.Duration { return time.Duration(tm.loopWait) * time.Second }

// shortTimings are the timings of the clusters whose tests wait for many
// lease expiries: ttl 10 s, loop_wait 1 s, retry_timeout 4 s keep a lost
// leader a few seconds and give a DCS call on a busy machine 4 s.
var shortTimings = &timings{ttl: 10, loopWait: 1, retryTimeout: 4}

// defaultTimings are the timings of clusterOpts without timings.
var defaultTimings = timings{ttl: int(ttl / time.Second), loopWait: loopWait, retryTimeout: retryTimeout}

// dcsServer is a DCS a cluster runs on instead of the shared etcd.
type dcsServer interface {
	// section is the name and the lines of the members' [dcs.<name>].
	section() (name string, lines []string)
	// read returns the cluster's keys, relative to its scope.
	read(ctx context.Context, scope string) (dcsView, error)
}

// testCluster is one custos cluster: its own scope in the shared etcd (or
// in opts.dcs), one agent process per member, each with its PostgreSQL,
// run by the cluster harness (testkit/cluster).
type testCluster struct {
	t     *testing.T
	scope string
	dir   string
	opts  clusterOpts
	h     *tkcluster.Cluster
	m     []*member
}

// member is one agent with its files and ports. The fields a test may
// change before the configuration is written (opts.edit) or written again
// (writeConfig) are read when the harness writes it.
type member struct {
	c    *testCluster
	h    *tkcluster.Member
	name string
	// dir is the member's directory (owned by the agent's user, 0700):
	// config, log, data directory.
	dir        string
	apiPort    int
	pgPort     int
	dataDir    string
	binDir     string
	dcsHosts   []string
	configPath string
	logPath    string
	// tags are the lines of the member's [tags] section, e.g.
	// "nofailover = true"; setTags changes them on a running agent.
	tags []string
	// extra are lines appended to the configuration file after every
	// section, e.g. a [postgresql.recovery_conf] table.
	extra []string
	// lines are lines added to a table of the configuration, e.g.
	// lines["postgresql"] = {`pre_promote = "..."`}.
	lines map[string][]string
}

// agentProc is one run of the custos process, as the harness ran it.
type agentProc struct {
	cmd  *exec.Cmd
	done <-chan struct{}
	// state is how the run ended; nil while it runs.
	state *os.ProcessState
}

var scopeSeq struct {
	sync.Mutex
	n int
}

// startCluster creates a cluster of opts.members agents on empty data
// directories and starts them. Everything is stopped and removed at the end
// of the test; a failed test first prints what each agent and PostgreSQL
// logged and what the DCS holds.
func startCluster(t *testing.T, opts clusterOpts) *testCluster {
	t.Helper()
	if opts.members == 0 {
		opts.members = 3
	}
	scopeSeq.Lock()
	scopeSeq.n++
	scope := fmt.Sprintf("e2e-%s-%d-%d", strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")), os.Getpid(), scopeSeq.n)
	scopeSeq.Unlock()
	// Not t.TempDir(): its parent directories are private to the test's
	// user (root), and the agents run as postgres. This tree belongs to
	// the agents' user; the test (root) reads it all the same. It is kept
	// when the test fails.
	dir, err := os.MkdirTemp("", "custos-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	chownToAgent(t, dir)
	c := &testCluster{t: t, scope: scope, dir: dir, opts: opts}
	t.Cleanup(func() {
		c.stopAll()
		if opts.dcs == nil {
			_, _ = env.kv.Delete(context.Background(), c.prefix(), clientv3.WithPrefix())
		}
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		} else {
			t.Logf("kept %s for inspection", dir)
		}
	})
	// Runs before the stop above (clean-ups run last in, first out).
	t.Cleanup(func() {
		if t.Failed() {
			c.dump()
		}
	})
	dcs := tkcluster.DCS{Name: "etcd3", Lines: []string{"hosts = " + tkcluster.TOMLValue([]string{env.etcd.Endpoint})}}
	if opts.dcs != nil {
		dcs.Name, dcs.Lines = opts.dcs.section()
	}
	tm := c.timings()
	o := tkcluster.Options{
		Scope: scope, Members: opts.members, Dir: dir, Label: "e2e",
		Custos: env.custos, PluginDir: env.pluginDir, PgBinDir: env.pgBinDir,
		DCS:         dcs,
		Timings:     tkcluster.Timings{TTL: tm.ttl, LoopWait: tm.loopWait, RetryTimeout: tm.retryTimeout},
		Superuser:   tkcluster.Role{Username: superuser, Password: superuserPass},
		Replication: tkcluster.Role{Username: replicationUser, Password: replicationPass},
		RunAs:       env.cred,
		Logf:        t.Logf,
		Edit:        c.editConfig,
	}
	if opts.auth {
		o.API = &tkcluster.Role{Username: apiUser, Password: apiPassword}
	}
	if c.h, err = tkcluster.New(o); err != nil {
		t.Fatal(err)
	}
	if !opts.noStart {
		for _, m := range c.m {
			m.start(t)
		}
	}
	return c
}

// editConfig adds what the tests need to the harness's configuration of
// hm: the member's own settings (opts.edit, tags, extra lines), the
// cluster's (bootstrapDCS, pgParameters) and small servers. The first call
// for a member creates it.
func (c *testCluster) editConfig(hm *tkcluster.Member, cfg *tkcluster.Config) {
	m := c.memberFor(hm)
	if m.dataDir != hm.DataDir {
		// opts.edit put the data directory elsewhere.
		hm.DataDir = m.dataDir
		cfg.Set("postgresql", "data_dir", m.dataDir)
	}
	// A member's own endpoints of the shared etcd (a proxy in front of
	// it); opts.dcs gives its own section.
	if c.opts.dcs == nil && cfg.Has("dcs.etcd3", "hosts") {
		cfg.Set("dcs.etcd3", "hosts", m.dcsHosts)
	}
	for _, l := range c.opts.bootstrapDCS {
		cfg.Line("bootstrap.dcs", l)
	}
	// Settings Patroni takes from the dynamic configuration only.
	params := "bootstrap.dcs.postgresql.parameters"
	cfg.Set(params, "wal_keep_size", "128MB")
	// Small servers: nine of them may run at once on a small machine.
	cfg.Set(params, "max_connections", 30)
	for _, l := range c.opts.pgParameters {
		cfg.Line(params, l)
	}
	cfg.Set("postgresql", "bin_dir", m.binDir)
	for _, table := range slices.Sorted(maps.Keys(m.lines)) {
		for _, l := range m.lines[table] {
			cfg.Line(table, l)
		}
	}
	cfg.Set("postgresql.parameters", "shared_buffers", "16MB")
	for _, l := range m.tags {
		cfg.Line("tags", l)
	}
	cfg.Raw(m.extra...)
}

// memberFor is the test's member for hm, created (and given to
// opts.edit) on the first call.
func (c *testCluster) memberFor(hm *tkcluster.Member) *member {
	if hm.Index < len(c.m) {
		return c.m[hm.Index]
	}
	m := &member{
		c: c, h: hm, name: hm.Name, dir: hm.Dir,
		apiPort: hm.APIPort, pgPort: hm.PGPort,
		dataDir:    hm.DataDir,
		binDir:     env.pgBinDir,
		dcsHosts:   []string{env.etcd.Endpoint},
		configPath: hm.ConfigPath,
		logPath:    hm.LogPath,
	}
	if c.opts.edit != nil {
		c.opts.edit(m)
	}
	c.m = append(c.m, m)
	return m
}

func chownToAgent(t testing.TB, path string) {
	t.Helper()
	if env.cred == nil {
		return
	}
	if err := os.Chown(path, int(env.cred.Uid), int(env.cred.Gid)); err != nil {
		t.Fatal(err)
	}
}

// timings are the cluster's HA timings.
func (c *testCluster) timings() timings {
	if c.opts.timings != nil {
		return *c.opts.timings
	}
	return defaultTimings
}

// prefix is the cluster's key prefix in etcd.
func (c *testCluster) prefix() string { return "/service/" + c.scope + "/" }

// member returns the member called name.
func (c *testCluster) member(name string) *member {
	for _, m := range c.m {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("no member %q", name)
	return nil
}

// others returns every member but m.
func (c *testCluster) others(m *member) []*member {
	var out []*member
	for _, o := range c.m {
		if o != m {
			out = append(out, o)
		}
	}
	return out
}

// writeConfig writes the member's configuration file again, after a
// change to its fields.
func (m *member) writeConfig(t testing.TB) {
	t.Helper()
	if err := m.h.WriteConfig(); err != nil {
		t.Fatal(err)
	}
}

// config is the member's configuration file as it would be with the DCS
// section given.
func (m *member) config(dcsName string, dcsLines []string) string {
	cfg := m.h.ConfigWith(tkcluster.DCS{Name: dcsName, Lines: dcsLines})
	m.c.editConfig(m.h, cfg)
	return string(cfg.Bytes())
}

// etcdSection is the [dcs.etcd3] section for the shared etcd.
func (m *member) etcdSection() (name string, lines []string) {
	return "etcd3", []string{"hosts = " + tkcluster.TOMLValue(m.dcsHosts)}
}

// start starts the agent process; its stdout and stderr go to the member's
// log, appended across runs. Should the test binary die (a -timeout panic
// skips the clean-ups), the agents shut down as on SIGTERM: they stop
// their PostgreSQL.
func (m *member) start(t testing.TB) {
	t.Helper()
	if err := m.h.Start(); err != nil {
		t.Fatal(err)
	}
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// current is the agent's last run, nil when it was never started.
func (m *member) current() *agentProc {
	cmd := m.h.Cmd()
	if cmd == nil {
		return nil
	}
	return &agentProc{cmd: cmd, done: m.h.Done(), state: m.h.ExitState()}
}

// running reports whether the agent process runs.
func (m *member) running() bool { return m.h.Running() }

// restart starts the agent again after it exited.
func (m *member) restart(t testing.TB) {
	t.Helper()
	if m.h.Cmd() != nil {
		m.waitExit(t, stopTimeout)
	}
	m.start(t)
}

// waitExit waits for the agent to exit and returns its state.
func (m *member) waitExit(t testing.TB, timeout time.Duration) *os.ProcessState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := m.h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// What kill signals.
type target int

const (
	agentOnly target = iota
	postmasterOnly
	agentAndPostmaster
)

// kill sends sig to the agent, its postmaster or both (the agent first, so
// that it cannot react to the postmaster's death), and for SIGKILL waits
// until they are gone. SIGKILL of the agent takes its process group: the
// agent and its plugins, as when a node's agent service is killed, but not
// PostgreSQL (the agent starts it in a group of its own).
func (m *member) kill(t testing.TB, what target, sig syscall.Signal) {
	t.Helper()
	pm := m.postmasterPID()
	if what != postmasterOnly {
		if !m.h.Running() {
			t.Fatalf("%s: no running agent to signal", m.name)
		}
		if sig == syscall.SIGKILL {
			m.h.KillGroup()
		} else if err := m.h.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	if what != agentOnly {
		if pm == 0 {
			t.Fatalf("%s: no running postmaster to signal", m.name)
		}
		if err := syscall.Kill(pm, sig); err != nil {
			t.Fatalf("%s: signalling postmaster %d: %v", m.name, pm, err)
		}
		if sig == syscall.SIGKILL {
			deadline := time.Now().Add(stopTimeout)
			for processAlive(pm) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: postmaster %d still alive %v after SIGKILL", m.name, pm, stopTimeout)
				}
				time.Sleep(5 * time.Millisecond) // a killed process is gone within milliseconds
			}
		}
	}
}

// postmasterPID is the pid of the member's live postmaster, 0 when none.
func (m *member) postmasterPID() int { return m.h.PostmasterPID() }

// processAlive: the pid exists and is not a zombie (see
// tkcluster.ProcessAlive, which reaps a postmaster adopted here).
func processAlive(pid int) bool { return tkcluster.ProcessAlive(pid) }

// stopAll stops every agent gracefully (SIGTERM: PostgreSQL is stopped
// fast) and kills what is left after stopTimeout, postmasters included.
func (c *testCluster) stopAll() {
	if c.h == nil {
		return
	}
	if err := c.h.Stop(stopTimeout); err != nil {
		c.t.Log(err)
	}
}

// freePorts returns n loopback ports free a moment ago, none handed out
// before by this process (the harness's, shared with the clusters' ports).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := tkcluster.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
