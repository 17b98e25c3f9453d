//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/core/reaper"
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
// in opts.dcs), one
// agent process per member, each with its PostgreSQL.
type testCluster struct {
	t     *testing.T
	scope string
	dir   string
	opts  clusterOpts
	m     []*member
}

// member is one agent with its files and ports.
type member struct {
	c    *testCluster
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

	mu   sync.Mutex
	proc *agentProc
	runs int
}

// agentProc is one run of the custos process.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	// state is set when done is closed.
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
	ports := freePorts(t, 2*opts.members)
	for i := range opts.members {
		name := fmt.Sprintf("node%d", i+1)
		mdir := filepath.Join(dir, name)
		if err := os.Mkdir(mdir, 0o700); err != nil {
			t.Fatal(err)
		}
		chownToAgent(t, mdir)
		m := &member{
			c: c, name: name, dir: mdir,
			apiPort: ports[2*i], pgPort: ports[2*i+1],
			dataDir:    filepath.Join(mdir, "data"),
			binDir:     env.pgBinDir,
			dcsHosts:   []string{env.etcd.Endpoint},
			configPath: filepath.Join(mdir, "custos.toml"),
			logPath:    filepath.Join(mdir, "custos.log"),
		}
		if opts.edit != nil {
			opts.edit(m)
		}
		m.writeConfig(t)
		c.m = append(c.m, m)
	}
	if !opts.noStart {
		for _, m := range c.m {
			m.start(t)
		}
	}
	return c
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

func (m *member) writeConfig(t testing.TB) {
	t.Helper()
	name, lines := m.etcdSection()
	if m.c.opts.dcs != nil {
		name, lines = m.c.opts.dcs.section()
	}
	if err := os.WriteFile(m.configPath, []byte(m.config(name, lines)), 0o600); err != nil {
		t.Fatal(err)
	}
	chownToAgent(t, m.configPath)
}

// etcdSection is the [dcs.etcd3] section for the shared etcd.
func (m *member) etcdSection() (name string, lines []string) {
	hosts, _ := json.Marshal(m.dcsHosts)
	return "etcd3", []string{"hosts = " + string(hosts)}
}

// config is the member's configuration file with the DCS section given.
func (m *member) config(dcsName string, dcsLines []string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("scope = %q", m.c.scope)
	w("name = %q", m.name)
	w("plugin_dir = %q", env.pluginDir)
	w("[restapi]")
	w("listen = %q", fmt.Sprintf("127.0.0.1:%d", m.apiPort))
	w("connect_address = %q", fmt.Sprintf("127.0.0.1:%d", m.apiPort))
	w("[dcs.%s]", dcsName)
	for _, l := range dcsLines {
		w("%s", l)
	}
	w("[bootstrap.dcs]")
	tm := m.c.timings()
	w("ttl = %d", tm.ttl)
	w("loop_wait = %d", tm.loopWait)
	w("retry_timeout = %d", tm.retryTimeout)
	w("maximum_lag_on_failover = 1048576")
	for _, l := range m.c.opts.bootstrapDCS {
		w("%s", l)
	}
	w("[bootstrap.dcs.postgresql]")
	w("use_pg_rewind = true")
	// Settings Patroni takes from the dynamic configuration only.
	w("[bootstrap.dcs.postgresql.parameters]")
	w(`wal_keep_size = "128MB"`)
	// Small servers: nine of them may run at once on a small machine.
	w("max_connections = 30")
	for _, l := range m.c.opts.pgParameters {
		w("%s", l)
	}
	w("[postgresql]")
	w("listen = %q", fmt.Sprintf("127.0.0.1:%d", m.pgPort))
	w("connect_address = %q", fmt.Sprintf("127.0.0.1:%d", m.pgPort))
	w("data_dir = %q", m.dataDir)
	w("bin_dir = %q", m.binDir)
	w("[postgresql.authentication.superuser]")
	w("username = %q", superuser)
	w("password = %q", superuserPass)
	w("[postgresql.authentication.replication]")
	w("username = %q", replicationUser)
	w("password = %q", replicationPass)
	w("[postgresql.parameters]")
	w(`shared_buffers = "16MB"`)
	if m.c.opts.auth {
		for _, section := range []string{"restapi", "ctl"} {
			w("[%s.authentication]", section)
			w("username = %q", apiUser)
			w("password = %q", apiPassword)
		}
	}
	if len(m.tags) > 0 {
		w("[tags]")
		for _, l := range m.tags {
			w("%s", l)
		}
	}
	for _, l := range m.extra {
		w("%s", l)
	}
	return b.String()
}

// start starts the agent process; its stdout and stderr go to the member's
// log, appended across runs.
func (m *member) start(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil && !m.proc.exited() {
		t.Fatalf("%s: the agent is already running", m.name)
	}
	m.runs++
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== e2e: starting custos (run %d) at %s\n", m.runs, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(env.custos, m.configPath)
	cmd.Dir = m.dir
	// Nothing from the test's environment: CUSTOS_* would override the file.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + m.dir, "TMPDIR=" + m.dir, "LANG=C.UTF-8"}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the test binary die (a -timeout panic skips the clean-ups),
	// the agents shut down as on SIGTERM: they stop their PostgreSQL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: env.cred, Pdeathsig: syscall.SIGTERM}
	reaper.Prepare(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: starting custos: %v", m.name, err)
	}
	p := &agentProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	m.proc = p
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (m *member) current() *agentProc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// running reports whether the agent process runs.
func (m *member) running() bool {
	p := m.current()
	return p != nil && !p.exited()
}

// restart starts the agent again after it exited.
func (m *member) restart(t testing.TB) {
	t.Helper()
	if p := m.current(); p != nil {
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Fatalf("%s: the agent did not exit within %v", m.name, stopTimeout)
		}
	}
	m.start(t)
}

// waitExit waits for the agent to exit and returns its state.
func (m *member) waitExit(t testing.TB, timeout time.Duration) *os.ProcessState {
	t.Helper()
	p := m.current()
	if p == nil {
		t.Fatalf("%s: the agent was never started", m.name)
	}
	select {
	case <-p.done:
		return p.state
	case <-time.After(timeout):
		t.Fatalf("%s: the agent did not exit within %v", m.name, timeout)
		return nil
	}
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
		p := m.current()
		if p == nil || p.exited() {
			t.Fatalf("%s: no running agent to signal", m.name)
		}
		if sig == syscall.SIGKILL {
			killGroup(p)
		} else if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatalf("%s: signalling the agent: %v", m.name, err)
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

// killGroup SIGKILLs the agent's process group (the agent leads it, see
// reaper.Prepare in start) and waits for the agent to exit. Plugins left
// behind by a killed agent would otherwise live on.
func killGroup(p *agentProc) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// postmasterPID is the pid of the member's live postmaster, 0 when none.
func (m *member) postmasterPID() int {
	data, err := os.ReadFile(filepath.Join(m.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || !processAlive(pid) {
		return 0
	}
	if st, err := reaper.ReadStat(pid); err != nil || st.Comm != "postgres" {
		return 0
	}
	return pid
}

// processAlive: the pid exists and is not a zombie (pid checks alone lie
// where nobody reaps). A zombie this process adopted is reaped: a
// postmaster whose agent was killed is re-parented here, and its zombie
// would make PostgreSQL refuse the data directory ("lock file
// postmaster.pid already exists"). The reaper goroutine leaves it alone, as
// it leads its own process group like a child started through Prepare.
func processAlive(pid int) bool {
	st, err := reaper.ReadStat(pid)
	if err != nil {
		return false
	}
	if st.State == 'Z' && st.PPid == os.Getpid() {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
	return st.State != 'Z'
}

// stopAll stops every agent gracefully (SIGTERM: PostgreSQL is stopped
// fast) and kills what is left after stopTimeout, postmasters included.
func (c *testCluster) stopAll() {
	var wg sync.WaitGroup
	for _, m := range c.m {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.stop()
		}()
	}
	wg.Wait()
}

func (m *member) stop() {
	if p := m.current(); p != nil && !p.exited() {
		// SIGCONT in case a test stopped it.
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			m.c.t.Logf("%s: the agent ignored SIGTERM for %v: killing it", m.name, stopTimeout)
			killGroup(p)
		}
	}
	if pm := m.postmasterPID(); pm != 0 {
		m.c.t.Logf("%s: postmaster %d outlived its agent: killing it", m.name, pm)
		_ = syscall.Kill(pm, syscall.SIGKILL)
		deadline := time.Now().Add(stopTimeout)
		for processAlive(pm) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // polling a process we cannot wait for
		}
	}
}

var portsTaken struct {
	sync.Mutex
	m map[int]bool
}

// freePorts returns n loopback ports free a moment ago, none handed out
// before by this process.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	portsTaken.Lock()
	defer portsTaken.Unlock()
	if portsTaken.m == nil {
		portsTaken.m = map[int]bool{}
	}
	var out []int
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("picking a free port: %v", err)
		}
		defer l.Close()
		p := l.Addr().(*net.TCPAddr).Port
		if !portsTaken.m[p] {
			portsTaken.m[p] = true
			out = append(out, p)
		}
	}
	return out
}
