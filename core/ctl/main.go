package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
)

// Exit codes of custosctl.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a mistake in the command line: custosctl exits with
// exitUsage and points at --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// env is what a custosctl run takes from its process; tests give their
// own.
type env struct {
	// stdin carries the answers to prompts; nil reads as closed.
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	// executable is custosctl's own path: the default plugin directory is
	// beside it.
	executable string
	// dcs, when set, opens the DCS backends instead of the plugins (tests
	// hand out backends of an in-memory store).
	dcs backendOpener
	// now is the clock of printed timestamps and of the example times in
	// prompts; nil means time.Now.
	now func() time.Time
	// pollInterval is how often --wait looks again; 0 means the default of
	// each command.
	pollInterval time.Duration
}

// silentError is a failure already reported on stdout (patronictl's
// "Failed: ..." lines): custosctl exits with exitFailure without adding an
// "Error:" line.
type silentError struct{ what string }

func (e silentError) Error() string { return e.what }

// Main is the whole custosctl command. It returns the exit code. SIGINT and
// SIGTERM cancel the running command (a watch ends).
func Main(args []string, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, &env{stdin: os.Stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv, executable: exe})
}

// run executes one command line.
func run(ctx context.Context, args []string, e *env) int {
	root := newRootCommand(e)
	root.SetArgs(rewriteQueryArgs(args))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var se silentError
	if errors.As(err, &se) {
		return exitFailure
	}
	fmt.Fprintf(e.stderr, "Error: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		cmd, _, ferr := root.Find(args)
		if ferr != nil || cmd == nil {
			cmd = root
		}
		fmt.Fprintf(e.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitFailure
}

func newRootCommand(e *env) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "custosctl",
		Short: "custosctl manages custos PostgreSQL clusters",
		Long: `custosctl manages custos PostgreSQL clusters, and Patroni ones: it reads the DCS
through the same DCS plugins as the custos agent.

Tell it where the DCS is with -c (a custos agent configuration file, which also
gives the default cluster name) or -d (a DCS URL such as
etcd3://10.0.0.1:2379,10.0.0.2:2379/service or zookeeper://10.0.0.1:2181).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true

	pf := root.PersistentFlags()
	pf.StringVarP(&g.configFile, "config-file", "c", "", "custos agent configuration file (env "+EnvConfigFile+")")
	pf.StringVarP(&g.dcsURL, "dcs-url", "d", "", "DCS URL, scheme://host:port[,host:port...][/namespace] with scheme etcd3, etcd or zookeeper (env "+EnvDCSURL+")")
	pf.StringVar(&g.pluginDir, "plugin-dir", "", "directory of the custos-plugin-* binaries (default: plugin_dir of the configuration, else plugins/ beside custosctl)")
	pf.BoolVarP(&g.insecure, "insecure", "k", false, "allow TLS connections to the REST API without verifying certificates")

	root.AddCommand(
		newListCommand(e, g), newTopologyCommand(e, g),
		newSwitchoverCommand(e, g), newFailoverCommand(e, g),
		newRestartCommand(e, g), newReloadCommand(e, g), newReinitCommand(e, g), newFlushCommand(e, g),
		newPauseCommand(e, g, true), newPauseCommand(e, g, false),
		newEditConfigCommand(e, g), newShowConfigCommand(e, g), newHistoryCommand(e, g),
		newQueryCommand(e, g), newDSNCommand(e, g), newRemoveCommand(e, g), newVersionCommand(e, g),
	)
	return root
}

// newLogger is custosctl's logger: warnings and errors only, unless
// CUSTOSCTL_LOG_LEVEL says otherwise; plugin log lines come through it.
func newLogger(e *env) hclog.Logger {
	level := hclog.Warn
	if s, ok := e.lookupEnv(EnvLogLevel); ok && s != "" {
		if l := hclog.LevelFromString(s); l != hclog.NoLevel {
			level = l
		}
	}
	return hclog.New(&hclog.LoggerOptions{Name: "custosctl", Level: level, Output: e.stderr})
}
