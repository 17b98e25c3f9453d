package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/reaper"
	"github.com/custos-ha/custos/demo/internal/embedetcd"
	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

// Exit codes of custos-demo.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
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
	// listTimeout bounds one `custosctl list` of the demo cluster.
	listTimeout = 30 * time.Second
	// envLogLevel sets the level of the demo's own log lines and of the
	// DCS plugin it reads the cluster with (default warn).
	envLogLevel = "CUSTOS_DEMO_LOG_LEVEL"
)

// Plugins the demo's agents need.
var demoPlugins = []string{"custos-plugin-dcs-etcd3", "custos-plugin-replica-basebackup"}

// usageError is a mistake in the command line: the demo exits with
// exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// env is what a run takes from its process; tests give their own.
type env struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	// executable is custos-demo's own path: custos, custosctl and the
	// plugins are beside it by default.
	executable string
}

type demoOptions struct {
	members   int
	custosBin string
	pluginDir string
	pgBinDir  string
	keep      bool
	timeout   time.Duration
}

const usageText = `Usage: custos-demo [flags]

Run a throwaway custos cluster on this machine: an embedded etcd and custos
agents as separate processes, each with its own PostgreSQL, on free loopback
ports, everything in a temporary directory. Once the cluster is healthy (one
leader, the other members streaming) its member list is printed; the demo then
runs until Ctrl-C or SIGTERM, stops the agents and removes the directory.

The custos and custosctl binaries are taken from beside custos-demo (make build
puts them all in bin/) and the plugins from plugins/ beside custos. PostgreSQL
refuses to run as root: started as root, the demo runs the agents as the
postgres user.

Flags:
`

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, e *env) int {
	o := &demoOptions{}
	fs := flag.NewFlagSet("custos-demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.members, "members", defaultDemoMembers, "number of members")
	fs.StringVar(&o.custosBin, "custos-bin", "", "the custos agent binary (default: custos beside custos-demo)")
	fs.StringVar(&o.pluginDir, "plugin-dir", "", "the plugin directory (default: plugins beside the custos binary)")
	fs.StringVar(&o.pgBinDir, "pg-bin-dir", "", "PostgreSQL's bin directory (default: the newest "+debianPgBinGlob+")")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configurations, data, logs) at the end")
	fs.DurationVar(&o.timeout, "timeout", defaultDemoTimeout, "how long to wait for the cluster to become healthy")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "Error: unexpected argument %q\nRun 'custos-demo --help' for usage.\n", fs.Arg(0))
		return exitUsage
	}
	err := runDemo(ctx, e, o)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "Error: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(e.stderr, "Run 'custos-demo --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

// demoPlan is what the demo will run, checked before anything starts.
type demoPlan struct {
	custosBin    string
	custosctlBin string
	pluginDir    string
	pgBinDir     string
	// runAs is the user the agents run as; nil: the demo's own.
	runAs *osUser
	// copyReason, when set, says why runAs cannot run custosBin or the
	// plugins where they are: the demo copies them into its directory.
	copyReason string
}

func (o *demoOptions) plan(e *env) (*demoPlan, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("custos-demo runs on Linux only")
	}
	if o.members < 1 || o.members > maxDemoMembers {
		return nil, usageError{fmt.Errorf("--members %d: give 1 to %d", o.members, maxDemoMembers)}
	}
	if o.timeout <= 0 {
		return nil, usageError{fmt.Errorf("--timeout %v: give a positive duration", o.timeout)}
	}
	p := &demoPlan{custosBin: o.custosBin, custosctlBin: filepath.Join(filepath.Dir(e.executable), "custosctl")}
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
	if err := checkExecutable(p.custosctlBin, "the custosctl binary"); err != nil {
		return nil, fmt.Errorf("%w (run make build: the demo shows the cluster with custosctl)", err)
	}
	p.pluginDir = o.pluginDir
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
		if p.runAs, err = lookupOSUser(tkcluster.PostgresUser); err != nil {
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

// exitText says how a member's agent ended.
func exitText(m *tkcluster.Member) string {
	if st := m.ExitState(); st != nil && !st.Success() {
		return st.String()
	}
	return "exit status 0"
}

func newLogger(e *env) hclog.Logger {
	level := hclog.Warn
	if s, ok := e.lookupEnv(envLogLevel); ok && s != "" {
		if l := hclog.LevelFromString(s); l != hclog.NoLevel {
			level = l
		}
	}
	return hclog.New(&hclog.LoggerOptions{Name: "custos-demo", Level: level, Output: e.stderr})
}

func runDemo(ctx context.Context, e *env, o *demoOptions) (err error) {
	p, err := o.plan(e)
	if err != nil {
		return err
	}
	logger := newLogger(e)
	out := e.stdout
	// Orphans (the postmaster of an agent that was killed) come to the
	// demo and are reaped here rather than left to PID 1.
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

	secrets, err := newDemoSecrets()
	if err != nil {
		return err
	}
	s := demoSetup{
		Dir: dir, EtcdEndpoint: etcd.Endpoint, Custos: p.custosBin, PluginDir: p.pluginDir, PgBinDir: p.pgBinDir,
		Secrets: secrets, Members: o.members, RunAs: p.runAs, Environ: os.Environ(),
	}
	c, err := tkcluster.New(s.options())
	if err != nil {
		return err
	}
	agents := c.Members

	fmt.Fprintf(out, "custos demo: cluster %q with %d member(s) in %s\n", demoScope, len(agents), dir)
	fmt.Fprintf(out, "  etcd   %s (embedded, log %s)\n", etcd.Endpoint, etcd.LogPath)
	defer func() { err = errors.Join(err, stopAgents(out, agents)) }()
	for _, a := range agents {
		if err := a.Start(); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-6s PostgreSQL %s, REST API %s, agent pid %d, log %s\n",
			a.Name, a.PGAddr(), a.APIAddr(), a.PID(), a.LogPath)
	}
	if p.runAs != nil {
		fmt.Fprintf(out, "The agents run as the %s user: PostgreSQL refuses to run as root.\n", p.runAs.Name)
	}

	r, err := openReader(ctx, p.pluginDir, etcd.Endpoint, logger)
	if err != nil {
		return err
	}
	defer r.Close()

	fmt.Fprintf(out, "Waiting up to %v for a leader and %d streaming replica(s)...\n", o.timeout, len(agents)-1)
	cl, err := waitHealthy(ctx, out, r, agents, etcd, o.timeout)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "Interrupted.")
			return nil
		}
		if cl != nil {
			_ = printList(e.stderr, p.custosctlBin, agents[0].ConfigPath)
		}
		for _, a := range agents {
			fmt.Fprintf(e.stderr, "--- last lines of %s:\n%s", a.LogPath, a.Tail(logTailLines))
		}
		if !o.keep {
			err = fmt.Errorf("%w (run with --keep to look at the logs and data afterwards)", err)
		}
		return err
	}

	if err := printList(out, p.custosctlBin, agents[0].ConfigPath); err != nil {
		return err
	}
	printDemoUsage(out, p.custosctlBin, s, agents, cl)
	return runUntilStopped(ctx, out, agents, etcd)
}

// printList shows the cluster as `custosctl -c <config> list` shows it.
func printList(w io.Writer, custosctl, configPath string) error {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, custosctl, "-c", configPath, "list")
	// Nothing from the caller's environment that would point custosctl
	// elsewhere (CUSTOS_*, CUSTOSCTL_*).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CUSTOS") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s -c %s list: %w", custosctl, configPath, err)
	}
	return nil
}

// waitHealthy reads the cluster until it is healthy, printing what it
// waits for whenever that changes. It fails when an agent exits, etcd
// fails or the timeout passes; the last cluster read comes back either way.
func waitHealthy(ctx context.Context, out io.Writer, r *dcsReader, agents []*tkcluster.Member, etcd *embedetcd.Server, timeout time.Duration) (*cluster.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *cluster.Cluster
	lastStatus := ""
	tick := time.NewTicker(demoPollInterval)
	defer tick.Stop()
	for {
		for _, a := range agents {
			if !a.Running() {
				return last, fmt.Errorf("the agent of %s exited before the cluster became healthy (%s)", a.Name, exitText(a))
			}
		}
		c, err := r.Read(ctx)
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

func printDemoUsage(out io.Writer, custosctl string, s demoSetup, agents []*tkcluster.Member, c *cluster.Cluster) {
	first := agents[0]
	fmt.Fprintln(out, "The demo cluster is healthy. In another terminal, try:")
	fmt.Fprintf(out, "  %s -c %s list\n", custosctl, first.ConfigPath)
	fmt.Fprintf(out, "  psql \"host=127.0.0.1 port=%d user=%s password=%s dbname=postgres\"\n", first.PGPort, demoSuperuser, s.Secrets.Superuser)
	for _, a := range agents {
		if a.Name != c.LeaderName() || len(agents) < 2 {
			continue
		}
		// Killing the agent alone would leave its PostgreSQL running as a
		// primary beside the new one (what a watchdog prevents in earnest).
		if pm := a.PostmasterPID(); pm != 0 {
			fmt.Fprintf(out, "  kill -9 %d %d    # kill the leader %s (agent and PostgreSQL); a replica takes over within ttl (%d s)\n",
				a.PID(), pm, a.Name, demoTTL)
		} else {
			fmt.Fprintf(out, "  kill %d    # stop the leader %s; a replica takes over within seconds\n", a.PID(), a.Name)
		}
	}
	fmt.Fprintf(out, "Press Ctrl-C to stop the demo and remove %s.\n", s.Dir)
}

// runUntilStopped waits for Ctrl-C or SIGTERM, reporting agents that exit
// meanwhile (someone killing one to see a failover is part of the demo).
func runUntilStopped(ctx context.Context, out io.Writer, agents []*tkcluster.Member, etcd *embedetcd.Server) error {
	var wg sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer func() {
		stopWatch()
		wg.Wait()
	}()
	for _, a := range agents {
		wg.Go(func() {
			select {
			case <-a.Done():
				fmt.Fprintf(out, "custos demo: the agent of %s (pid %d) exited: %s\n", a.Name, a.PID(), exitText(a))
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
func stopAgents(out io.Writer, agents []*tkcluster.Member) error {
	var running []*tkcluster.Member
	for _, a := range agents {
		if a.Running() {
			running = append(running, a)
		}
	}
	if len(running) > 0 {
		fmt.Fprintf(out, "Stopping %d agent(s)...\n", len(running))
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		for _, a := range running {
			_ = a.Signal(syscall.SIGTERM)
		}
		timer := time.NewTimer(agentStopTimeout)
		defer timer.Stop()
	wait:
		for _, a := range running {
			select {
			case <-a.Done():
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
		a.KillGroup()
	}
	var errs []error
	for _, a := range agents {
		pid, err := a.StopPostgres(postmasterStopTimeout)
		if pid != 0 {
			fmt.Fprintf(out, "Stopped the PostgreSQL of %s (pid %d), which outlived its agent.\n", a.Name, pid)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
