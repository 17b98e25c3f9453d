package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/custos-ha/custos/core/reaper"
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the suite with the command line's arguments and returns
// the exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 20, "runs per scenario")
	names := fs.String("scenarios", "", "comma-separated scenarios to run (default: all): "+scenarioNames())
	binDir := fs.String("bin", "bin", "directory with custos and plugins/ (make build)")
	pgBinDir := fs.String("pg-bin-dir", defaultPgBinDir(), "PostgreSQL server binaries")
	etcdBin := fs.String("etcd", "etcd", "the etcd server binary (Debian etcd-server)")
	workDir := fs.String("workdir", "", "where clusters live (default: /dev/shm when writable, else the temp dir)")
	keep := fs.Bool("keep", false, "keep each cluster's files (logs, data) after the run")
	markdown := fs.String("markdown", "", "also write the table and the runs' notes as Markdown to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	list, err := pickScenarios(*names, false)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 2
	}
	if *runs < 1 {
		fmt.Fprintln(stderr, "chaos: -runs must be >= 1")
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	}
	etcd, err := exec.LookPath(*etcdBin)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %s not found: install etcd (apt-get install etcd-server) or pass -etcd\n", *etcdBin)
		return 1
	}
	e, err := newEnv(*binDir, *pgBinDir, etcd, *workDir, *keep, logf)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 1
	}
	defer e.close()
	// Orphans of killed agents (a postmaster, its backends) are adopted
	// by this process instead of a PID 1 that may never reap them.
	stopReaper := reaper.Start(nil)
	defer stopReaper()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	began := time.Now()
	sums := runScenarios(ctx, e, list, *runs)
	fmt.Fprintf(stdout, "\ncustos under faults: %d run(s) per scenario, %v in all, as %s; ttl %d s, loop_wait %d s, retry_timeout %d s, synchronous_mode on, etcd cluster of %d\n\n",
		*runs, time.Since(began).Round(time.Second), currentUser(), timings.TTL, timings.LoopWait, timings.RetryTimeout, etcdMembers)
	writeTable(stdout, sums)
	fmt.Fprintln(stdout)
	writeDetails(stdout, sums)
	if *markdown != "" {
		f, err := os.Create(*markdown)
		if err == nil {
			writeMarkdown(f, sums)
			fmt.Fprintln(f, "\n```")
			writeDetails(f, sums)
			fmt.Fprintln(f, "```")
			err = f.Close()
		}
		if err != nil {
			fmt.Fprintf(stderr, "chaos: %v\n", err)
			return 1
		}
	}
	for _, s := range sums {
		r := s.row()
		if s.err != nil || r.failed > 0 || r.lost > 0 || (!s.sc.noWatchdog && r.windows > 0) || (s.sc.keepsLeader && r.changes+r.outages > 0) {
			return 1
		}
	}
	return 0
}

func scenarioNames() string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return strings.Join(out, ", ")
}

// pickScenarios returns the scenarios named (comma-separated), all of
// them when names is empty, or only the short form's when short is set.
func pickScenarios(names string, short bool) ([]scenario, error) {
	if names == "" {
		var out []scenario
		for _, s := range scenarios {
			if short && s.short || !short && !s.named {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []scenario
	for _, n := range strings.Split(names, ",") {
		found := false
		for _, s := range scenarios {
			if s.name == strings.TrimSpace(n) {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", n, scenarioNames())
		}
	}
	return out, nil
}

// runScenarios runs each scenario runs times on a cluster of its own. A
// run after which the cluster did not converge ends its scenario: the runs
// after it would measure the wreck.
func runScenarios(ctx context.Context, e *env, list []scenario, runs int) []summary {
	var sums []summary
	for _, sc := range list {
		if ctx.Err() != nil {
			break
		}
		sum := summary{sc: sc}
		e.logf("=== %s: %s", sc.name, sc.about)
		c, err := newCluster(e, sc.name, clusterOpts{noWatchdog: sc.noWatchdog})
		if err == nil {
			err = c.start(ctx)
		}
		if err != nil {
			sum.err = err
		}
		for n := 1; err == nil && n <= runs && ctx.Err() == nil; n++ {
			res := runOnce(ctx, c, sc, n)
			sum.runs = append(sum.runs, res)
			if !res.converged {
				sum.err = fmt.Errorf("run %d: the cluster did not converge: %v", n, res.err)
				break
			}
		}
		if c != nil {
			c.close()
		}
		sums = append(sums, sum)
	}
	return sums
}
