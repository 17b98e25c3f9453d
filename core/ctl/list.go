package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/spf13/cobra"
)

const (
	// defaultWatchInterval is -W's refresh period, patronictl's.
	defaultWatchInterval = 2 * time.Second
	// timestampLayout is -t's line, patronictl's.
	timestampLayout = "2006-01-02 15:04:05"
	// clearScreen moves the cursor home and clears the terminal before each
	// refresh of a watch (what patronictl's click.clear writes).
	clearScreen = "\x1b[2J\x1b[1;1H"
)

type listOptions struct {
	// topology shows the members as a replication tree.
	topology     bool
	extended     bool
	timestamp    bool
	format       string
	watchDefault bool
	watch        float64
}

func newListCommand(e *env, g *globalOptions) *cobra.Command {
	o := &listOptions{}
	cmd := &cobra.Command{
		Use:   "list [CLUSTER...]",
		Short: "List the members of clusters",
		Long: `List the members of clusters as patronictl 3.0.2 does: Member, Host, Role,
State, TL and Lag in MB, plus Pending restart, Scheduled restart and Tags when a
member has them (or with -e). The cluster name defaults to the configuration's
scope. custosctl only reads the DCS.`,
		Example: `  custosctl -c /etc/custos/custos.toml list
  custosctl -d etcd3://127.0.0.1:2379 list demo -f json
  custosctl -c node1.toml list -W`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runList(cmd.Context(), e, g, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.extended, "extended", "e", false, "show Pending restart, Scheduled restart and Tags even when no member has them")
	f.BoolVarP(&o.timestamp, "timestamp", "t", false, "print the time before the table")
	f.StringVarP(&o.format, "format", "f", formatPretty, "output format: pretty, tsv, json or yaml")
	f.BoolVarP(&o.watchDefault, "watch-default", "W", false, "refresh every 2 seconds until interrupted")
	f.Float64VarP(&o.watch, "watch", "w", 0, "refresh every `SECONDS` until interrupted")
	return cmd
}

func newTopologyCommand(e *env, g *globalOptions) *cobra.Command {
	o := &listOptions{topology: true, format: formatPretty}
	cmd := &cobra.Command{
		Use:   "topology [CLUSTER...]",
		Short: "Show the members as a replication tree",
		Long: `Show the members as patronictl topology does: the list table with the leader
first and each replica under the member it replicates from (tag replicatefrom),
indented with "+ ".`,
		Example: `  custosctl -c custos.toml topology`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runList(cmd.Context(), e, g, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.watchDefault, "watch-default", "W", false, "refresh every 2 seconds until interrupted")
	f.Float64VarP(&o.watch, "watch", "w", 0, "refresh every `SECONDS` until interrupted")
	return cmd
}

func (o *listOptions) check() error {
	switch o.format {
	case formatPretty, formatTSV, formatJSON, formatYAML, formatYML:
	default:
		return usageError{fmt.Errorf("unknown format %q: use pretty, tsv, json or yaml", o.format)}
	}
	if o.watch < 0 || math.IsNaN(o.watch) || math.IsInf(o.watch, 0) {
		return usageError{fmt.Errorf("--watch %v: give a positive number of seconds", o.watch)}
	}
	return nil
}

// interval is the watch period, 0 for a single listing.
func (o *listOptions) interval() time.Duration {
	if o.watch > 0 {
		return max(time.Duration(o.watch*float64(time.Second)), time.Millisecond)
	}
	if o.watchDefault {
		return defaultWatchInterval
	}
	return 0
}

func runList(ctx context.Context, e *env, g *globalOptions, o *listOptions, args []string) error {
	if err := o.check(); err != nil {
		return err
	}
	t, err := g.resolve(e.lookupEnv, e.executable)
	if err != nil {
		return err
	}
	names, err := t.clusterNames(args)
	if err != nil {
		return err
	}
	r, err := openReader(e, t)
	if err != nil {
		return err
	}
	defer r.Close()

	interval := o.interval()
	clear := interval > 0 && isTerminal(e.stdout)
	for {
		if clear {
			_, _ = io.WriteString(e.stdout, clearScreen)
		}
		if o.timestamp {
			fmt.Fprintln(e.stdout, time.Now().Format(timestampLayout))
		}
		err := listClusters(ctx, e, r, names, o)
		if interval == 0 {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "Error: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// listClusters prints each cluster; a cluster that cannot be read does
// not keep the others from being listed.
func listClusters(ctx context.Context, e *env, r *reader, names []string, o *listOptions) error {
	var errs []error
	for _, name := range names {
		c, problems, err := r.Read(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range problems {
			fmt.Fprintf(e.stderr, "Warning: cluster %s: %v\n", name, p)
		}
		l := newListing(name, c, o.extended)
		if o.topology {
			l = newTopology(name, c)
		}
		if err := l.write(e.stdout, o.format); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// isTerminal reports whether w is a terminal, where a watch clears the
// screen before each refresh.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
