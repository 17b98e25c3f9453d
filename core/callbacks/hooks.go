package callbacks

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Hook names, as the configuration spells them.
const (
	// HookPrePromote runs after the leader key is won and before
	// PostgreSQL is promoted, with no arguments; a failure means no
	// promotion.
	HookPrePromote = "pre_promote"
	// HookBeforeStop runs before every stop of PostgreSQL, with no
	// arguments; its outcome is only logged.
	HookBeforeStop = "before_stop"
	// HookPostBootstrap runs once a new cluster's primary is up, with the
	// superuser's connection string; a failure fails the bootstrap.
	HookPostBootstrap = "post_bootstrap"
)

// Hooks lists the hook names.
var Hooks = []string{HookPrePromote, HookBeforeStop, HookPostBootstrap}

// PostBootstrapPGOptions is PGOPTIONS for post_bootstrap: what the script
// writes is committed locally (no synchronous standby exists yet) and no
// statement timeout of the cluster's configuration cuts it short.
const PostBootstrapPGOptions = "-c synchronous_commit=local -c statement_timeout=0"

// HookRunner runs the configured hooks, each within the same timeout.
type HookRunner struct {
	commands map[string][]string
	timeout  time.Duration
	logger   hclog.Logger
}

// NewHookRunner takes each hook's command line (an empty one means none)
// and the timeout of one run, which must be positive. It fails on an
// unknown hook name or a command that does not split into words. Output
// lines are logged through logger (nil discards).
func NewHookRunner(commands map[string]string, timeout time.Duration, logger hclog.Logger) (*HookRunner, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("hook timeout %v must be positive", timeout)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	r := &HookRunner{commands: map[string][]string{}, timeout: timeout, logger: logger}
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if !slices.Contains(Hooks, name) {
			return nil, fmt.Errorf("unknown hook %q (want one of %s)", name, strings.Join(Hooks, ", "))
		}
		line := commands[name]
		if strings.TrimSpace(line) == "" {
			continue
		}
		words, err := Split(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r.commands[name] = words
	}
	return r, nil
}

// Configured reports whether the hook has a command.
func (r *HookRunner) Configured(hook string) bool {
	_, ok := r.commands[hook]
	return ok
}

// PrePromote runs pre_promote. It returns nil at once when none is
// configured; a non-zero exit is an *ExitError, a timeout matches
// context.DeadlineExceeded.
func (r *HookRunner) PrePromote(ctx context.Context) error {
	return r.run(ctx, HookPrePromote, nil, nil)
}

// BeforeStop runs before_stop. It returns nil at once when none is
// configured.
func (r *HookRunner) BeforeStop(ctx context.Context) error {
	return r.run(ctx, HookBeforeStop, nil, nil)
}

// PostBootstrap runs post_bootstrap with the superuser's connection string
// (which must hold no password) as its argument, PGPASSFILE set to
// passFile and PGOPTIONS to PostBootstrapPGOptions. It returns nil at once
// when none is configured.
func (r *HookRunner) PostBootstrap(ctx context.Context, connString, passFile string) error {
	env := []string{"PGOPTIONS=" + PostBootstrapPGOptions}
	if passFile != "" {
		env = append(env, "PGPASSFILE="+passFile)
	}
	return r.run(ctx, HookPostBootstrap, []string{connString}, env)
}

// run runs a hook and logs its outcome.
func (r *HookRunner) run(ctx context.Context, hook string, args, env []string) error {
	words, ok := r.commands[hook]
	if !ok {
		return nil
	}
	r.logger.Info("running hook", "hook", hook, "command", words[0])
	res, err := Run(ctx, Command{
		Name:    hook,
		Argv:    append(slices.Clone(words), args...),
		Env:     env,
		Timeout: r.timeout,
		Output: func(line string) {
			r.logger.Info("hook output", "hook", hook, "line", line)
		},
	})
	took := res.Duration.Round(time.Millisecond).String()
	if err != nil {
		r.logger.Warn("hook failed", "hook", hook, "exit_code", res.ExitCode, "duration", took, "error", err)
		return err
	}
	r.logger.Info("hook succeeded", "hook", hook, "duration", took)
	return nil
}
