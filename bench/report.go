package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// summary is the median, minimum and maximum of one metric's trials.
type summary struct {
	n                int
	median, min, max float64
}

func summarize(v []float64) summary {
	if len(v) == 0 {
		return summary{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{n: len(s), median: med, min: s[0], max: s[len(s)-1]}
}

// row is one line of the table: a metric, how to print it and its target.
type row struct {
	key, label string
	// digits after the decimal point.
	digits int
	// target says what is asked of custos, and met checks it; nil when the
	// metric has no target of its own.
	target string
	met    func(ratio float64, custos, patroni summary, p profile) bool
	// onlyProfile limits the target to one profile.
	onlyProfile string
}

func ratioAtMost(limit float64) func(float64, summary, summary, profile) bool {
	return func(r float64, _, _ summary, _ profile) bool { return r <= limit }
}

func ratioAtLeast(limit float64) func(float64, summary, summary, profile) bool {
	return func(r float64, _, _ summary, _ profile) bool { return r >= limit }
}

var rows = []row{
	{key: mSwitchoverDowntime, label: "A switchover: write downtime (s)", digits: 3, target: "ratio <= 0.4", met: ratioAtMost(0.4)},
	{key: mCrashRecovery, label: "B node crash: first commit after kill (s)", digits: 3, target: "ratio <= 1.0", met: ratioAtMost(1.0)},
	{key: mCrashLeaseLeft, label: "B node crash: lease left at kill (s)", digits: 3},
	{key: mCrashBeyondLease, label: "B node crash: first commit beyond lease (s)", digits: 3, target: "custos <= 0.5 s",
		met: func(_ float64, c, _ summary, _ profile) bool { return c.median <= 0.5 }},
	{key: mCrashLost, label: "B node crash: acknowledged commits lost", digits: 0},
	{key: mPostmasterRecovery, label: "C postmaster crash: first commit after kill (s)", digits: 3, target: "ratio <= 0.3", met: ratioAtMost(0.3), onlyProfile: "default"},
	{key: mPrimaryRPS, label: "D GET /primary on the leader (req/s)", digits: 0, target: "ratio >= 20", met: ratioAtLeast(20)},
	{key: mPrimaryP50, label: "D GET /primary p50 (ms)", digits: 3},
	{key: mPrimaryP99, label: "D GET /primary p99 (ms)", digits: 3, target: "ratio <= 0.05", met: ratioAtMost(0.05)},
	{key: mReplicaRPS, label: "D GET /replica on a replica (req/s)", digits: 0, target: "ratio >= 20", met: ratioAtLeast(20)},
	{key: mReplicaP50, label: "D GET /replica p50 (ms)", digits: 3},
	{key: mReplicaP99, label: "D GET /replica p99 (ms)", digits: 3, target: "ratio <= 0.05", met: ratioAtMost(0.05)},
	{key: mIdleRSS, label: "E idle RSS per member (MiB)", digits: 1, target: "ratio <= 0.5", met: ratioAtMost(0.5)},
	{key: mIdleAnon, label: "E idle RSS: anonymous part (MiB)", digits: 1},
	{key: mIdleCPU, label: "E idle CPU per member (s per window)", digits: 3, target: "ratio <= 0.3", met: ratioAtMost(0.3)},
	{key: mIdleDCS, label: "E etcd requests per member (req/s)", digits: 2, target: "ratio <= 1", met: ratioAtMost(1)},
}

// profileResult is what one profile measured on both systems.
type profileResult struct {
	prof            profile
	custos, patroni results
}

// table renders the results: one header and one line per metric.
func table(pr profileResult) [][]string {
	out := [][]string{{"metric", "custos median [min..max]", "Patroni median [min..max]", "custos/Patroni", "target", "met"}}
	for _, r := range rows {
		c, p := summarize(pr.custos[r.key]), summarize(pr.patroni[r.key])
		if c.n == 0 && p.n == 0 {
			continue
		}
		ratio := math.NaN()
		if c.n > 0 && p.n > 0 && p.median != 0 {
			ratio = c.median / p.median
		}
		target, met := r.target, ""
		if r.onlyProfile != "" && r.onlyProfile != pr.prof.name {
			target = ""
		}
		if target != "" {
			switch {
			case c.n == 0 || p.n == 0:
				met = "n/a"
			case r.met(ratio, c, p, pr.prof):
				met = "yes"
			default:
				met = "NO"
			}
		}
		ratioText := "-"
		if !math.IsNaN(ratio) {
			ratioText = fmt.Sprintf("%.3g", ratio)
		}
		out = append(out, []string{r.label, formatSummary(c, r.digits), formatSummary(p, r.digits), ratioText, target, met})
	}
	return out
}

func formatSummary(s summary, digits int) string {
	if s.n == 0 {
		return "no data"
	}
	f := func(v float64) string { return fmt.Sprintf("%.*f", digits, v) }
	return fmt.Sprintf("%s [%s..%s]", f(s.median), f(s.min), f(s.max))
}

// writeText prints a table with aligned columns.
func writeText(w io.Writer, t [][]string) {
	widths := make([]int, len(t[0]))
	for _, line := range t {
		for i, cell := range line {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, line := range t {
		var b strings.Builder
		for i, cell := range line {
			if i > 0 {
				b.WriteString("  ")
			}
			fmt.Fprintf(&b, "%-*s", widths[i], cell)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// writeMarkdown prints a table as GitHub Markdown.
func writeMarkdown(w io.Writer, t [][]string) {
	for i, line := range t {
		fmt.Fprintf(w, "| %s |\n", strings.Join(line, " | "))
		if i == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(line)))
		}
	}
}
