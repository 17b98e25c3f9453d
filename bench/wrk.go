package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// wrk settings of scenario D: wrkThreads threads when wrk shares the
// machine's CPUs with the cluster, one when it has a CPU of its own (two
// threads on one CPU wait for each other for milliseconds at a time, which
// shows as the servers' p99).
const (
	wrkThreads     = 2
	wrkConnections = 4
)

func wrkThreadCount(pinned bool) int {
	if pinned {
		return 1
	}
	return wrkThreads
}

// wrkResult is one wrk run.
type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	// bad counts non-2xx answers, failed connects and timeouts. Read errors
	// are not counted: a server that closes the connection after each
	// answer (Patroni's HTTP/1.0 server) shows one per request, all of
	// them answered.
	bad int
	// closed counts wrk's read and write errors.
	closed int
	// output is wrk's report.
	output string
}

// wrkCPUs splits the CPUs between wrk and the cluster for one run.
// Unpinned on a two-core machine, wrk's threads share both cores with the
// server and with the rest of the cluster, and the slowest 1 % of requests
// measure the scheduler's time slices (milliseconds: wrk or the server
// waiting behind PostgreSQL, etcd or the other agents) rather than the
// server. Pinned, wrk has the last CPU to itself and this process with
// everything it started (etcd, the agents, their plugins, PostgreSQL) shares
// the others, the member under test included.
type wrkCPUs struct {
	// wrk is the CPU wrk runs on; others the rest.
	wrk, others, all string
	pids             []int
}

// pinForWrk moves this process and its descendants (every thread) off the
// last CPU, which wrk then gets.
func pinForWrk() (*wrkCPUs, error) {
	n := runtime.NumCPU()
	p := &wrkCPUs{
		wrk:    strconv.Itoa(n - 1),
		others: fmt.Sprintf("0-%d", n-2),
		all:    fmt.Sprintf("0-%d", n-1),
		pids:   descendants(os.Getpid()),
	}
	for _, pid := range p.pids {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", p.others, strconv.Itoa(pid)).CombinedOutput(); err != nil && alive(pid) {
			p.restore()
			return nil, fmt.Errorf("taskset -a -p -c %s %d: %w: %s", p.others, pid, err, out)
		}
	}
	return p, nil
}

// restore gives the processes every CPU again.
func (p *wrkCPUs) restore() {
	if p == nil {
		return
	}
	for _, pid := range p.pids {
		_ = exec.Command("taskset", "-a", "-p", "-c", p.all, strconv.Itoa(pid)).Run()
	}
}

func runWrk(ctx context.Context, url string, d time.Duration, cpus *wrkCPUs) (wrkResult, error) {
	args := []string{"wrk", "-t", strconv.Itoa(wrkThreadCount(cpus != nil)), "-c", strconv.Itoa(wrkConnections),
		"-d", fmt.Sprintf("%ds", int(d/time.Second)), "--latency", url}
	if cpus != nil {
		args = append([]string{"taskset", "-c", cpus.wrk}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", url, err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk's report: Requests/sec, the 50% and 99% lines of the
// latency distribution, non-2xx answers and socket errors.
func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{output: out}
	var haveRPS, have50, have99 bool
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("parsing %q: %w", line, err)
			}
			r.rps, haveRPS = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("parsing %q: %w", line, err)
			}
			if f[0] == "50%" {
				r.p50, have50 = d, true
			} else {
				r.p99, have99 = d, true
			}
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			n, _ := strconv.Atoi(f[len(f)-1])
			r.bad += n
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
				if f[i] == "read" || f[i] == "write" {
					r.closed += n
				} else {
					r.bad += n
				}
			}
		}
	}
	if !haveRPS || !have50 || !have99 {
		return r, fmt.Errorf("no Requests/sec or latency distribution in wrk's output:\n%s", out)
	}
	return r, nil
}

// parseWrkDuration reads wrk's "126.00us", "1.23ms", "2.01s", "1.50m".
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, err
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("unknown duration %q", s)
}
