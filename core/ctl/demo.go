package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/ctl/internal/embedetcd"
	"github.com/custos-ha/custos/core/reaper"
)

const (
	// demoScope is the demo cluster's name.
	demoScope = "demo"
	// defaultDemoMembers is a leader and two replicas.
	defaultDemoMembers = 3
	// maxDemoMembers keeps the demo a demo: each member is a PostgreSQL.
	maxDemoMembers = 9
	// defaultDemoTimeout bounds the wait for a healthy cluster: initdb, a
	// base backup per replica and a few HA cycles take well under a minute
	// here; three minutes leave room for a slow disk.
	defaultDemoTimeout = 3 * time.Minute
	// demoPollInterval is how often the demo reads the DCS while it waits.
	demoPollInterval = time.Second
	// agentStopTimeout bounds an agent's graceful stop after SIGTERM: it
	// stops PostgreSQL within pg_ctl_timeout (60 s by default) first.
	agentStopTimeout = 90 * time.Second
	// postmasterStopTimeout bounds the fast shutdown of a PostgreSQL whose
	// agent was killed.
	postmasterStopTimeout = 15 * time.Second
	// logTailLines is how much of each agent log a failed start shows.
	logTailLines = 25
)

// Plugins the demo's agents need.
var demoPlugins = []string{"custos-plugin-dcs-etcd3", "custos-plugin-replica-basebackup"}

type demoOptions struct {
	members   int
	custosBin string
	pgBinDir  string
	keep      bool
	timeout   time.Duration
}

func newDemoCommand(e *env, g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a throwaway custos cluster on this machine until Ctrl-C",
		Long: `Run a throwaway custos cluster on this machine: an embedded etcd and custos
agents as separate processes, each with its own PostgreSQL, on free loopback
ports, everything in a temporary directory. Once the cluster is healthy (one
leader, the other members streaming) its member list is printed; the demo then
runs until Ctrl-C or SIGTERM, stops the agents and removes the directory.

The custos binary is taken from beside custosctl (make build puts both in bin/)
and the plugins from plugins/ beside it. PostgreSQL refuses to run as root:
started as root, the demo runs the agents as the postgres user.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), e, g, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.members, "members", defaultDemoMembers, "number of members")
	f.StringVar(&o.custosBin, "custos-bin", "", "the custos agent binary (default: custos beside custosctl)")
	f.StringVar(&o.pgBinDir, "pg-bin-dir", "", "PostgreSQL's bin directory (default: the newest "+debianPgBinGlob+")")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configurations, data, logs) at the end")
	f.DurationVar(&o.timeout, "timeout", defaultDemoTimeout, "how long to wait for the cluster to become healthy")
	return cmd
}

// demoPlan is what the demo will run, checked before anything starts.
type demoPlan struct {
	custosBin string
	pluginDir string
	pgBinDir  string
	// runAs is the user the agents run as; nil: custosctl's own.
	runAs *osUser
	// copyReason, when set, says why runAs cannot run custosBin or the
	// plugins where they are: the demo copies them into its directory.
	copyReason string
}

func (o *demoOptions) plan(e *env, g *globalOptions) (*demoPlan, error) {
	if !demoSupported {
		return nil, errors.New("custosctl demo runs on Linux only")
	}
	if o.members < 1 || o.members > maxDemoMembers {
		return nil, usageError{fmt.Errorf("--members %d: give 1 to %d", o.members, maxDemoMembers)}
	}
	if o.timeout <= 0 {
		return nil, usageError{fmt.Errorf("--timeout %v: give a positive duration", o.timeout)}
	}
	p := &demoPlan{custosBin: o.custosBin}
	if p.custosBin == "" {
		p.custosBin = filepath.Join(filepath.Dir(e.executable), "custos")
	}
	var err error
	if p.custosBin, err = filepath.Abs(p.custosBin); err != nil {
		return nil, err
	}
	if err := checkExecutable(p.custosBin, "the custos binary"); err != nil {
		return nil, fmt.Errorf("%w (run make build, or pass --custos-bin)", err)
	}
	p.pluginDir = g.pluginDir
	if p.pluginDir == "" {
		p.pluginDir = config.DefaultPluginDir(p.custosBin)
	}
	if p.pluginDir, err = filepath.Abs(p.pluginDir); err != nil {
		return nil, err
	}
	if err := checkPluginDir(p.pluginDir, demoPlugins...); err != nil {
		return nil, err
	}
	if p.pgBinDir, err = findPgBinDir(o.pgBinDir, debianPgBinGlob); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if p.runAs, err = lookupOSUser(postgresOSUser); err != nil {
			return nil, err
		}
		if err := checkReachable(filepath.Join(p.pgBinDir, "postgres"), p.runAs); err != nil {
			return nil, err
		}
		// A checkout in root's home is out of the postgres user's reach:
		// the demo then runs copies.
		for _, path := range append([]string{p.custosBin}, pluginPaths(p.pluginDir)...) {
			if checkReachable(path, p.runAs) != nil {
				p.copyReason = fmt.Sprintf("the %s user cannot reach %s", p.runAs.Name, path)
				break
			}
		}
	}
	return p, nil
}

func pluginPaths(dir string) []string {
	paths := make([]string, len(demoPlugins))
	for i, n := range demoPlugins {
		paths[i] = filepath.Join(dir, n)
	}
	return paths
}

// copyBinaries copies the custos binary and the demo's plugins to
// binDir/custos and binDir/plugins/, readable and executable by everyone,
// writable by their owner only (as the plugin host requires).
func copyBinaries(binDir, custosBin, pluginDir string) (newBin, newPluginDir string, err error) {
	newBin, newPluginDir = filepath.Join(binDir, "custos"), filepath.Join(binDir, "plugins")
	if err := os.MkdirAll(newPluginDir, 0o755); err != nil {
		return "", "", err
	}
	for _, d := range []string{binDir, newPluginDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			return "", "", err
		}
	}
	pairs := [][2]string{{custosBin, newBin}}
	for _, n := range demoPlugins {
		pairs = append(pairs, [2]string{filepath.Join(pluginDir, n), filepath.Join(newPluginDir, n)})
	}
	for _, pair := range pairs {
		if err := copyFile(pair[0], pair[1], 0o755); err != nil {
			return "", "", fmt.Errorf("copying %s: %w", pair[0], err)
		}
	}
	return newBin, newPluginDir, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	// The umask may have taken bits away.
	return os.Chmod(dst, mode)
}

// demoAgent is one agent process.
type demoAgent struct {
	node       demoNode
	configPath string
	logPath    string
	cmd        *exec.Cmd
	done       chan struct{}
	// waitErr is the exit status; read it after done is closed.
	waitErr error
}

func (a *demoAgent) start(bin string, u *osUser) error {
	logFile, err := os.OpenFile(a.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer logFile.Close()
	if err := chownTo(a.logPath, u); err != nil {
		return err
	}
	cmd := exec.Command(bin, a.configPath)
	cmd.Dir = a.node.Dir
	cmd.Env = agentEnv(os.Environ(), a.node.Dir, u)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = agentSysProcAttr(u)
	// Its own process group: a Ctrl-C in the terminal reaches custosctl
	// only, which stops the agents in order.
	reaper.Prepare(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the agent of %s: %w", a.node.Name, err)
	}
	a.cmd = cmd
	a.done = make(chan struct{})
	go func() {
		a.waitErr = cmd.Wait()
		close(a.done)
	}()
	return nil
}

func (a *demoAgent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

func (a *demoAgent) pid() int { return a.cmd.Process.Pid }

// exitText says how the agent ended.
func (a *demoAgent) exitText() string {
	if a.waitErr == nil {
		return "exit status 0"
	}
	return a.waitErr.Error()
}

func chownTo(path string, u *osUser) error {
	if u == nil {
		return nil
	}
	if err := os.Chown(path, int(u.UID), int(u.GID)); err != nil {
		return fmt.Errorf("handing %s to the %s user: %w", path, u.Name, err)
	}
	return nil
}

func runDemo(ctx context.Context, e *env, g *globalOptions, o *demoOptions) (err error) {
	p, err := o.plan(e, g)
	if err != nil {
		return err
	}
	logger := newLogger(e)
	out := e.stdout
	// Orphans (the postmaster of an agent that was killed) come to
	// custosctl and are reaped here rather than left to PID 1.
	stopReaper := reaper.Start(logger)
	defer stopReaper()

	dir, err := os.MkdirTemp("", "custos-demo-")
	if err != nil {
		return fmt.Errorf("creating the demo directory: %w", err)
	}
	defer func() {
		if o.keep {
			fmt.Fprintf(out, "Kept %s.\n", dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the demo directory: %w", rerr))
		}
	}()
	if err := chownTo(dir, p.runAs); err != nil {
		return err
	}
	if p.copyReason != "" {
		if p.custosBin, p.pluginDir, err = copyBinaries(filepath.Join(dir, "bin"), p.custosBin, p.pluginDir); err != nil {
			return err
		}
		fmt.Fprintf(out, "custos demo: %s, so the agents run copies from %s.\n", p.copyReason, filepath.Dir(p.custosBin))
	}

	etcd, err := embedetcd.Start(ctx, dir)
	if err != nil {
		return err
	}
	defer etcd.Stop()

	setup, err := newSetup(dir, etcd.Endpoint, p, o.members)
	if err != nil {
		return err
	}
	agents := make([]*demoAgent, len(setup.Nodes))
	for i, n := range setup.Nodes {
		if err := os.Mkdir(n.Dir, 0o700); err != nil {
			return err
		}
		if err := chownTo(n.Dir, p.runAs); err != nil {
			return err
		}
		a := &demoAgent{node: n, configPath: filepath.Join(dir, n.Name+".toml"), logPath: filepath.Join(dir, n.Name+".log")}
		if err := os.WriteFile(a.configPath, setup.nodeConfig(i), 0o600); err != nil {
			return err
		}
		if err := chownTo(a.configPath, p.runAs); err != nil {
			return err
		}
		agents[i] = a
	}

	fmt.Fprintf(out, "custos demo: cluster %q with %d member(s) in %s\n", demoScope, len(agents), dir)
	fmt.Fprintf(out, "  etcd   %s (embedded, log %s)\n", etcd.Endpoint, etcd.LogPath)
	defer func() { err = errors.Join(err, stopAgents(out, agents)) }()
	for _, a := range agents {
		if err := a.start(p.custosBin, p.runAs); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-6s PostgreSQL %s, REST API %s, agent pid %d, log %s\n",
			a.node.Name, loopback(a.node.PGPort), loopback(a.node.APIPort), a.pid(), a.logPath)
	}
	if p.runAs != nil {
		fmt.Fprintf(out, "The agents run as the %s user: PostgreSQL refuses to run as root.\n", p.runAs.Name)
	}

	r, err := newReader(&target{
		plugin: "etcd3", section: DCSURL{Hosts: []string{etcd.Endpoint}}.SectionJSON(), namespace: config.DefaultNamespace,
		pluginDir: p.pluginDir, checksums: map[string]string{},
		ttl: demoTTL * time.Second, retryTimeout: demoRetryTimeout * time.Second,
	}, logger)
	if err != nil {
		return err
	}
	defer r.Close()

	fmt.Fprintf(out, "Waiting up to %v for a leader and %d streaming replica(s)...\n", o.timeout, len(agents)-1)
	c, err := waitHealthy(ctx, out, r, agents, etcd, o.timeout)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "Interrupted.")
			return nil
		}
		if c != nil {
			_ = newListing(demoScope, c, false).writePretty(e.stderr)
		}
		for _, a := range agents {
			fmt.Fprintf(e.stderr, "--- last lines of %s:\n%s", a.logPath, tailFile(a.logPath, logTailLines))
		}
		if !o.keep {
			err = fmt.Errorf("%w (run with --keep to look at the logs and data afterwards)", err)
		}
		return err
	}

	if err := newListing(demoScope, c, false).writePretty(out); err != nil {
		return err
	}
	printDemoUsage(out, e.executable, dir, setup, agents, c)
	return runUntilStopped(ctx, out, agents, etcd)
}

// newSetup picks the ports and passwords of the members.
func newSetup(dir, etcdEndpoint string, p *demoPlan, members int) (demoSetup, error) {
	secrets, err := newDemoSecrets()
	if err != nil {
		return demoSetup{}, err
	}
	ports, err := pickPorts(2 * members)
	if err != nil {
		return demoSetup{}, err
	}
	s := demoSetup{Scope: demoScope, EtcdEndpoint: etcdEndpoint, PluginDir: p.pluginDir, PgBinDir: p.pgBinDir, Secrets: secrets}
	for i := range members {
		name := "node" + strconv.Itoa(i+1)
		s.Nodes = append(s.Nodes, demoNode{Name: name, Dir: filepath.Join(dir, name), APIPort: ports[2*i], PGPort: ports[2*i+1]})
	}
	return s, nil
}

// waitHealthy reads the cluster until it is healthy, printing what it
// waits for whenever that changes. It fails when an agent exits, etcd
// fails or the timeout passes; the last cluster read comes back either way.
func waitHealthy(ctx context.Context, out io.Writer, r *reader, agents []*demoAgent, etcd *embedetcd.Server, timeout time.Duration) (*cluster.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *cluster.Cluster
	lastStatus := ""
	tick := time.NewTicker(demoPollInterval)
	defer tick.Stop()
	for {
		for _, a := range agents {
			if a.exited() {
				return last, fmt.Errorf("the agent of %s exited before the cluster became healthy (%s)", a.node.Name, a.exitText())
			}
		}
		c, _, err := r.Read(ctx, demoScope)
		status := ""
		if err != nil {
			status = err.Error()
		} else {
			last = c
			var healthy bool
			if healthy, status = clusterHealth(c, len(agents)); healthy {
				fmt.Fprintf(out, "  %s\n", status)
				return c, nil
			}
		}
		if status != lastStatus {
			fmt.Fprintf(out, "  waiting: %s\n", status)
			lastStatus = status
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return last, fmt.Errorf("the demo cluster did not become healthy within %v: %s", timeout, lastStatus)
			}
			return last, ctx.Err()
		case err := <-etcd.Err():
			return last, fmt.Errorf("the embedded etcd failed: %w", err)
		case <-tick.C:
		}
	}
}

func printDemoUsage(out io.Writer, custosctl, dir string, s demoSetup, agents []*demoAgent, c *cluster.Cluster) {
	first := s.Nodes[0]
	fmt.Fprintln(out, "The demo cluster is healthy. In another terminal, try:")
	fmt.Fprintf(out, "  %s -c %s list\n", custosctl, filepath.Join(dir, first.Name+".toml"))
	fmt.Fprintf(out, "  psql \"host=127.0.0.1 port=%d user=%s password=%s dbname=postgres\"\n", first.PGPort, demoSuperuser, s.Secrets.Superuser)
	for _, a := range agents {
		if a.node.Name != c.LeaderName() || len(agents) < 2 {
			continue
		}
		// Killing the agent alone would leave its PostgreSQL running as a
		// primary beside the new one (what a watchdog prevents in earnest).
		if pm := postmasterPid(a.node.DataDir()); pm != 0 {
			fmt.Fprintf(out, "  kill -9 %d %d    # kill the leader %s (agent and PostgreSQL); a replica takes over within ttl (%d s)\n",
				a.pid(), pm, a.node.Name, demoTTL)
		} else {
			fmt.Fprintf(out, "  kill %d    # stop the leader %s; a replica takes over within seconds\n", a.pid(), a.node.Name)
		}
	}
	fmt.Fprintf(out, "Press Ctrl-C to stop the demo and remove %s.\n", dir)
}

// runUntilStopped waits for Ctrl-C or SIGTERM, reporting agents that exit
// meanwhile (someone killing one to see a failover is part of the demo).
func runUntilStopped(ctx context.Context, out io.Writer, agents []*demoAgent, etcd *embedetcd.Server) error {
	var wg sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer func() {
		stopWatch()
		wg.Wait()
	}()
	for _, a := range agents {
		wg.Go(func() {
			select {
			case <-a.done:
				fmt.Fprintf(out, "custos demo: the agent of %s (pid %d) exited: %s\n", a.node.Name, a.pid(), a.exitText())
			case <-watchCtx.Done():
			}
		})
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-etcd.Err():
		return fmt.Errorf("the embedded etcd failed: %w", err)
	}
}

// stopAgents stops every agent: SIGTERM (the agent stops PostgreSQL and
// releases the leader key), SIGKILL for those still there after
// agentStopTimeout or at a second Ctrl-C; then it stops any PostgreSQL
// whose agent was killed.
func stopAgents(out io.Writer, agents []*demoAgent) error {
	var running []*demoAgent
	for _, a := range agents {
		if a != nil && a.cmd != nil && !a.exited() {
			running = append(running, a)
		}
	}
	if len(running) > 0 {
		fmt.Fprintf(out, "Stopping %d agent(s)...\n", len(running))
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		for _, a := range running {
			_ = a.cmd.Process.Signal(syscall.SIGTERM)
		}
		timer := time.NewTimer(agentStopTimeout)
		defer timer.Stop()
	wait:
		for _, a := range running {
			select {
			case <-a.done:
			case <-timer.C:
				fmt.Fprintf(out, "Agents still running after %v: killing them.\n", agentStopTimeout)
				break wait
			case <-sigs:
				fmt.Fprintln(out, "Killing the agents.")
				break wait
			}
		}
	}
	// An agent's process group holds the agent and its plugins: whatever
	// is left of it (everything after a timeout, plugins of an agent that
	// was killed) goes now.
	for _, a := range agents {
		if a != nil && a.cmd != nil {
			killGroup(a.pid(), syscall.SIGKILL)
		}
	}
	for _, a := range running {
		<-a.done
	}
	var errs []error
	for _, a := range agents {
		if a == nil {
			continue
		}
		pid, err := stopLeftoverPostmaster(a.node.DataDir(), postmasterStopTimeout)
		if pid != 0 {
			fmt.Fprintf(out, "Stopped the PostgreSQL of %s (pid %d), which outlived its agent.\n", a.node.Name, pid)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
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
