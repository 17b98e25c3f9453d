package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/watchdog"
)

// Exit codes of the custos command.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Main is the whole custos command: `custos [--validate-config] FILE`,
// `custos --version`. It returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == watchdog.FenceArg {
		// The watchdog's fencing process: the agent re-executes its own
		// binary, which runs nothing else.
		return watchdog.FenceMain(os.Stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("custos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	validate := fs.Bool("validate-config", false, "check the configuration file, print every problem and exit")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: custos [--validate-config] CONFIG_FILE\n       custos --version\n\nThe configuration file may also come from CUSTOS_CONFIG_FILE.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *version {
		fmt.Fprintf(stdout, "custos %s (Patroni wire version %s)\n", Version, WireVersion)
		return exitOK
	}
	path := fs.Arg(0)
	if path == "" {
		path = os.Getenv("CUSTOS_CONFIG_FILE")
	}
	if path == "" || fs.NArg() > 1 {
		fs.Usage()
		return exitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	if *validate {
		return validateConfig(path, exe, stdout, stderr)
	}

	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		printProblems(stderr, path, err)
		return exitFailure
	}
	logger := newLogger(cfg.Log, stderr)
	if path := os.Getenv("CUSTOS_CPUPROFILE"); path != "" {
		stopProfile, err := startCPUProfile(path)
		if err != nil {
			logger.Error("CUSTOS_CPUPROFILE", "error", err)
			return exitFailure
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, path, cfg, exe, logger); err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			printProblems(stderr, path, probs)
		} else {
			logger.Error("custos failed", "error", err)
		}
		return exitFailure
	}
	return exitOK
}

// startCPUProfile writes a CPU profile of the whole run to path (for
// `go tool pprof`), set by CUSTOS_CPUPROFILE: how the benchmarks find where
// an agent spends its time.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func printProblems(w io.Writer, path string, err error) {
	var probs config.Problems
	if errors.As(err, &probs) {
		fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(probs))
		for _, p := range probs {
			fmt.Fprintf(w, "  %s\n", p)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

// newLogger builds the agent's logger from [log].
func newLogger(l config.Log, w io.Writer) hclog.Logger {
	level := hclog.Info
	switch strings.ToUpper(l.Level) {
	case "TRACE":
		level = hclog.Trace
	case "DEBUG":
		level = hclog.Debug
	case "WARNING", "WARN":
		level = hclog.Warn
	case "ERROR", "CRITICAL":
		level = hclog.Error
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "custos",
		Level:      level,
		Output:     w,
		JSONFormat: strings.EqualFold(l.Type, "json"),
	})
}
