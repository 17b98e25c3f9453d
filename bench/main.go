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
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/custos-ha/custos/core/reaper"
)

// The two timing profiles.
var profiles = []profile{
	// Patroni's defaults.
	{name: "default", ttl: 30, loopWait: 10, retryTimeout: 10},
	// A fast cluster: ttl 10 with loop_wait + 2*retry_timeout = 9.
	{name: "fast", ttl: 10, loopWait: 1, retryTimeout: 4},
}

// scenarioOrder runs the idle footprint first, on a fresh cluster that
// nothing has loaded yet, and the destructive scenarios last.
var scenarioOrder = []string{"E", "D", "A", "C", "B"}

// settle is how long a freshly formed cluster is left alone before the
// first scenario: bootstrap work (checkpoints, slot creation, the first
// cycles) is over after a few loops.
func settle(p profile) time.Duration {
	return max(10*time.Second, 2*time.Duration(p.loopWait)*time.Second)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trials := fs.Int("trials", 5, "trials per scenario")
	idle := fs.Duration("idle", 60*time.Second, "E: length of one idle window")
	wrkTime := fs.Duration("wrk", 10*time.Second, "D: length of one wrk run (whole seconds)")
	profileNames := fs.String("profiles", "default,fast", "profiles to run: default, fast")
	systemNames := fs.String("systems", "custos,patroni", "systems to run: custos, patroni")
	scenarios := fs.String("scenarios", "ABCDE", "scenarios to run, e.g. AB")
	binDir := fs.String("bin", "bin", "directory with custos and plugins/ (make build)")
	patroniBin := fs.String("patroni", "/usr/bin/patroni", "the patroni command")
	pgBinDir := fs.String("pg-bin-dir", "/usr/lib/postgresql/15/bin", "PostgreSQL server binaries")
	etcdBin := fs.String("etcd", "etcd", "the etcd server binary (Debian etcd-server)")
	workDir := fs.String("workdir", "", "where clusters live (default: /dev/shm when writable, else the temp dir)")
	cpuProfile := fs.Bool("cpuprofile", false, "custos agents write CPU profiles (cpu.pprof in each member's directory; use with -keep)")
	var custosEnv []string
	fs.Func("custos-env", "add `KEY=VALUE` to the custos agents' environment (repeatable), e.g. GOGC=200", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		custosEnv = append(custosEnv, v)
		return nil
	})
	pin := fs.Bool("pin", true, "D: run wrk alone on the last CPU and the clusters on the others (needs 2 or more CPUs)")
	keep := fs.Bool("keep", false, "keep each cluster's files (logs, data) after the run")
	markdown := fs.String("markdown", "", "also write the tables as Markdown to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	}
	opts := options{trials: *trials, idle: *idle, wrkTime: *wrkTime, pin: *pin && runtime.NumCPU() >= 2, scenario: map[string]bool{}}
	for _, s := range strings.ToUpper(*scenarios) {
		opts.scenario[string(s)] = true
	}
	if opts.trials < 1 || opts.wrkTime < time.Second || opts.idle <= 0 {
		fmt.Fprintln(stderr, "bench: -trials must be >= 1, -wrk >= 1s and -idle > 0")
		return 2
	}
	var profs []profile
	for _, name := range strings.Split(*profileNames, ",") {
		i := -1
		for j, p := range profiles {
			if p.name == strings.TrimSpace(name) {
				i = j
			}
		}
		if i < 0 {
			fmt.Fprintf(stderr, "bench: unknown profile %q\n", name)
			return 2
		}
		profs = append(profs, profiles[i])
	}

	env, systems, err := setup(*binDir, *patroniBin, *pgBinDir, *etcdBin, *workDir, *keep, *cpuProfile, custosEnv, strings.Split(*systemNames, ","), opts)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	env.logf = logf
	defer func() {
		if !env.keep {
			_ = os.RemoveAll(env.root)
		}
	}()
	stopReaper := reaper.Start(nil)
	defer stopReaper()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	started := time.Now()
	load0 := loadAverage()
	var all []profileResult
	var errs []error
	for _, p := range profs {
		pr := profileResult{prof: p, custos: results{}, patroni: results{}}
		for _, sys := range systems {
			logf("== %s, profile %s", sys.label(), p)
			res, err := runCluster(ctx, env, sys, p, opts, logf)
			errs = append(errs, err...)
			if sys.label() == "custos" {
				pr.custos = res
			} else {
				pr.patroni = res
			}
			if ctx.Err() != nil {
				break
			}
		}
		all = append(all, pr)
		if ctx.Err() != nil {
			break
		}
	}
	header := runHeader(started, load0, loadAverage(), opts)
	fmt.Fprint(stdout, header)
	for _, pr := range all {
		fmt.Fprintf(stdout, "\nProfile %s; median [min..max] over the trials\n", pr.prof)
		writeText(stdout, table(pr))
	}
	if *markdown != "" {
		var b strings.Builder
		b.WriteString(strings.ReplaceAll(header, "\n", "  \n"))
		for _, pr := range all {
			fmt.Fprintf(&b, "\n#### Profile %s\n\n", pr.prof)
			writeMarkdown(&b, table(pr))
		}
		if err := os.WriteFile(*markdown, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(stdout, "\n%d failed trial(s) or scenario(s):\n", len(errs))
		for _, e := range errs {
			fmt.Fprintf(stdout, "  %v\n", e)
		}
	}
	if ctx.Err() != nil {
		return 1
	}
	return 0
}

// runCluster forms one cluster, runs the scenarios on it and removes it.
func runCluster(ctx context.Context, env *runEnv, sys system, p profile, opts options, logf func(string, ...any)) (results, []error) {
	res := results{}
	c, err := newCluster(env, sys, p)
	if err != nil {
		return res, []error{fmt.Errorf("%s %s: %w", sys.label(), p.name, err)}
	}
	defer c.close()
	formStart := time.Now()
	if _, err := c.start(ctx); err != nil {
		return res, []error{fmt.Errorf("%s %s: forming the cluster: %w (logs in %s)", sys.label(), p.name, err, c.dir)}
	}
	logf("%s cluster formed in %.1fs in %s; letting it settle %v", sys.label(), time.Since(formStart).Seconds(), c.dir, settle(p))
	r := &runner{c: c, opts: opts, res: res, nextID: 1, logf: logf}
	if err := r.createTable(ctx); err != nil {
		return res, []error{fmt.Errorf("%s %s: %w", sys.label(), p.name, err)}
	}
	select {
	case <-ctx.Done():
		return res, nil
	case <-time.After(settle(p)):
	}
	trialFuncs := map[string]func(context.Context, int) error{
		"A": r.switchover, "B": r.nodeCrash, "C": r.postmasterCrash, "D": r.healthChecks, "E": r.idle,
	}
	for _, s := range scenarioOrder {
		if opts.scenario[s] {
			r.trials(ctx, s, trialFuncs[s])
		}
	}
	return res, r.errs
}

// setup checks what the run needs and picks the user agents run as.
func setup(binDir, patroniBin, pgBinDir, etcdBin, workDir string, keep, cpuProfile bool, custosEnv, systemNames []string, opts options) (*runEnv, []system, error) {
	var problems []string
	need := func(path, hint string) string {
		p, err := exec.LookPath(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s not found: %s", path, hint))
			return path
		}
		return p
	}
	env := &runEnv{keep: keep}
	env.pgBinDir = pgBinDir
	need(filepath.Join(pgBinDir, "postgres"), "install PostgreSQL 15 (apt-get install postgresql-15) or pass -pg-bin-dir")
	env.etcdBin = need(etcdBin, "install etcd (apt-get install etcd-server) or pass -etcd")
	if opts.scenario["D"] {
		need("wrk", "apt-get install wrk")
	}
	var systems []system
	for _, name := range systemNames {
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "custos":
			abs, err := filepath.Abs(binDir)
			if err != nil {
				return nil, nil, err
			}
			bin := need(filepath.Join(abs, "custos"), "run make build, or pass -bin")
			need(filepath.Join(abs, "plugins", "custos-plugin-dcs-etcd3"), "run make build, or pass -bin")
			systems = append(systems, custosSystem{bin: bin, pluginDir: filepath.Join(abs, "plugins"), cpuProfile: cpuProfile, env: custosEnv})
		case "patroni":
			systems = append(systems, patroniSystem{bin: need(patroniBin, "apt-get install patroni (3.0.2), or pass -patroni")})
		default:
			return nil, nil, fmt.Errorf("unknown system %q (want custos, patroni)", name)
		}
	}
	if len(problems) > 0 {
		return nil, nil, errors.New(strings.Join(problems, "\n  "))
	}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, nil, fmt.Errorf("running as root needs the postgres user to run PostgreSQL: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		env.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if workDir == "" {
		workDir = os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			workDir = "/dev/shm"
		}
	}
	root, err := os.MkdirTemp(workDir, "custos-bench-")
	if err != nil {
		return nil, nil, err
	}
	// Everything below is reached by the agents' user.
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, nil, err
	}
	env.root = root
	return env, systems, nil
}

// runHeader says when, where and under what load the run happened.
func runHeader(started time.Time, load0, load1 string, opts options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "custos vs Patroni benchmark, %s, %v\n", started.Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "machine: %s, %d cores, Linux %s\n", cpuModel(), runtime.NumCPU(), kernel())
	fmt.Fprintf(&b, "load average (1, 5, 15 min) at start: %s, at end: %s\n", load0, load1)
	fmt.Fprintf(&b, "versions: %s; %s; %s\n", commandVersion("patroni", "--version"), commandVersion("etcd", "--version"), commandVersion("wrk", "-v"))
	pinned := ""
	if opts.pin {
		pinned = fmt.Sprintf(", alone on CPU %d (the clusters on the others)", runtime.NumCPU()-1)
	}
	fmt.Fprintf(&b, "trials per scenario: %d; idle window %v; wrk %v, %d threads, %d connections%s\n",
		opts.trials, opts.idle, opts.wrkTime, wrkThreadCount(opts.pin), wrkConnections, pinned)
	return b.String()
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}

func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// commandVersion is the first line of a version command's output.
func commandVersion(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return name + " (version unknown)"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(first)
}
