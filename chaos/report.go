package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// summary is what the runs of one scenario add up to.
type summary struct {
	sc   scenario
	runs []result
	// err is why the scenario stopped before its runs were done.
	err error
}

// row is the summary's line of the table.
type row struct {
	scenario                 string
	runs, failed             int
	acked, lost              int
	windows, changes         int
	outages                  int
	windowTotal              time.Duration
	convMedian, convMax, gap time.Duration
	converged                int
}

func (s summary) row() row {
	r := row{scenario: s.sc.name, runs: len(s.runs)}
	var conv []time.Duration
	for _, res := range s.runs {
		if res.err != nil {
			r.failed++
		}
		r.acked += res.acked
		r.lost += res.lost
		r.windows += len(res.overlaps)
		r.changes += res.changes
		r.outages += len(res.outages)
		for _, o := range res.overlaps {
			r.windowTotal += o.length()
		}
		if res.converged {
			r.converged++
			conv = append(conv, res.converge)
		}
		r.gap = max(r.gap, res.gap)
	}
	if len(conv) > 0 {
		slices.Sort(conv)
		r.convMedian, r.convMax = median(conv), conv[len(conv)-1]
	}
	return r
}

func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// columns are the table's headings.
var columns = []string{"scenario", "watchdog", "runs", "failed", "acknowledged", "lost", "dual-primary windows", "leader changes", "write outages", "converged", "convergence median", "max", "longest write gap"}

// cells are the summary's line of the table, one cell per column.
func (s summary) cells() []string {
	r := s.row()
	wd := "process"
	if s.sc.noWatchdog {
		wd = "off"
	}
	windows := fmt.Sprint(r.windows)
	if r.windows > 0 {
		windows = fmt.Sprintf("%d (%v)", r.windows, r.windowTotal.Round(time.Millisecond))
	}
	return []string{
		r.scenario, wd, fmt.Sprint(r.runs), fmt.Sprint(r.failed), fmt.Sprint(r.acked), fmt.Sprint(r.lost),
		windows, fmt.Sprint(r.changes), fmt.Sprint(r.outages), fmt.Sprintf("%d/%d", r.converged, r.runs),
		secs(r.convMedian), secs(r.convMax), secs(r.gap),
	}
}

// writeTable writes one line per scenario, the way make chaos prints it.
func writeTable(out io.Writer, sums []summary) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(columns, "\t")+"\t")
	for _, s := range sums {
		fmt.Fprintln(tw, strings.Join(s.cells(), "\t")+"\t")
	}
	_ = tw.Flush()
}

// writeMarkdown writes the same table in Markdown.
func writeMarkdown(out io.Writer, sums []summary) {
	fmt.Fprintln(out, "| "+strings.Join(columns, " | ")+" |")
	fmt.Fprintln(out, "|---|---"+strings.Repeat("|---:", len(columns)-2)+"|")
	for _, s := range sums {
		fmt.Fprintln(out, "| "+strings.Join(s.cells(), " | ")+" |")
	}
}

// writeDetails lists each run's notes and errors.
func writeDetails(out io.Writer, sums []summary) {
	for _, s := range sums {
		fmt.Fprintf(out, "%s: %s\n", s.sc.name, s.sc.about)
		for i, res := range s.runs {
			line := fmt.Sprintf("  run %d: %s", i+1, res.note)
			if res.err != nil {
				line += "; FAILED: " + strings.ReplaceAll(res.err.Error(), "\n", " ")
			}
			fmt.Fprintln(out, line)
		}
		if s.err != nil {
			fmt.Fprintf(out, "  stopped: %v\n", s.err)
		}
	}
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
