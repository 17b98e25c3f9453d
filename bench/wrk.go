package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrk settings of scenario D.
const (
	wrkThreads     = 2
	wrkConnections = 4
)

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

func runWrk(ctx context.Context, url string, d time.Duration) (wrkResult, error) {
	cmd := exec.CommandContext(ctx, "wrk",
		"-t", strconv.Itoa(wrkThreads), "-c", strconv.Itoa(wrkConnections),
		"-d", fmt.Sprintf("%ds", int(d/time.Second)), "--latency", url)
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
