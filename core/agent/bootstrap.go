package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/custos-ha/custos/core/callbacks"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/postgres"
)

// recoveryPoll is how often a restored cluster is asked whether its
// recovery ended.
const recoveryPoll = time.Second

// customBootstrap creates a new cluster with the command of a custom
// bootstrap method ([bootstrap.<name>]), as Patroni does: the command runs
// with --scope and --datadir (unless no_params) and --<key>=<value> for
// the section's other keys; then PostgreSQL starts with archive_mode off
// and the section's recovery_conf (or the recovery settings the command
// left, with keep_existing_recovery_conf; else none), and once its
// recovery ended it is the new cluster's primary, restarted with the
// configuration in effect. An error leaves the data directory to the HA
// loop, which removes it and releases /initialize.
func (l *local) customBootstrap(ctx context.Context, name string, m config.BootstrapMethod) error {
	switch st, err := l.pg.DataDirState(); st {
	case postgres.DirAbsent, postgres.DirEmpty:
	default:
		if err == nil {
			err = fmt.Errorf("data directory %s is %s", l.pg.DataDir(), st)
		}
		return fmt.Errorf("bootstrap method %s: %w", name, err)
	}
	argv, err := callbacks.Split(m.Command)
	if err != nil {
		return fmt.Errorf("bootstrap.%s.command: %w", name, err)
	}
	argv = append(argv, bootstrapParams(l.scope, l.pg.DataDir(), m)...)
	l.logger.Info("running the custom bootstrap command", "method", name, "command", argv)
	res, err := callbacks.Run(ctx, callbacks.Command{
		Name: "bootstrap." + name, Argv: argv,
		Output: func(line string) { l.logger.Info("bootstrap output", "method", name, "line", line) },
	})
	if err != nil {
		return fmt.Errorf("bootstrap method %s: %w", name, err)
	}
	l.logger.Info("the custom bootstrap command succeeded", "method", name, "took", res.Duration.Round(time.Millisecond))
	if st, err := l.pg.DataDirState(); st != postgres.DirInitialized {
		return fmt.Errorf("bootstrap method %s: the command succeeded but left no cluster in %s (%s %v)", name, l.pg.DataDir(), st, err)
	}

	setup := postgres.Setup{ArchiveOff: true}
	switch {
	case len(m.RecoveryConf) > 0:
		setup.Recovery = map[string]string{}
		for k, v := range m.RecoveryConf {
			setup.Recovery[k] = fmt.Sprint(v)
		}
	case m.KeepExistingRecoveryConf:
		setup.KeepRecovery = true
	}
	if err := l.pg.Configure(setup); err != nil {
		return fmt.Errorf("bootstrap method %s: %w", name, err)
	}
	err = l.pg.Start(ctx, l.startTimeout)
	for errors.Is(err, postgres.ErrStillStarting) {
		l.logger.Info("the restored cluster is still starting (recovering)", "method", name)
		err = l.pg.WaitReady(ctx, l.startTimeout)
	}
	if err != nil {
		return fmt.Errorf("bootstrap method %s: starting the new cluster: %w", name, err)
	}
	if err := l.waitRecoveryEnd(ctx, name); err != nil {
		return err
	}
	if err := l.pg.CreateRoles(ctx); err != nil {
		return err
	}
	if err := l.postBootstrap(ctx); err != nil {
		return err
	}
	// The configuration in effect: archive_mode as configured, no
	// recovery settings left behind.
	if err := l.pg.Configure(postgres.Setup{}); err != nil {
		return fmt.Errorf("bootstrap method %s: %w", name, err)
	}
	if err := l.pg.Restart(ctx, postgres.StopOptions{Mode: postgres.StopFast}, l.startTimeout); err != nil {
		return fmt.Errorf("bootstrap method %s: restarting with the configuration in effect: %w", name, err)
	}
	return nil
}

// waitRecoveryEnd waits until the restored cluster left recovery (its
// recovery_target_action promoted it, or it had none to do).
func (l *local) waitRecoveryEnd(ctx context.Context, name string) error {
	for {
		obs, err := l.pg.Observe(ctx)
		switch {
		case err == nil && !obs.InRecovery:
			return nil
		case !l.pg.IsRunning():
			return fmt.Errorf("bootstrap method %s: the restored cluster stopped during its recovery (a recovery_target_action other than promote?)", name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bootstrap method %s: waiting for the end of recovery: %w", name, ctx.Err())
		case <-time.After(recoveryPoll):
		}
	}
}

// bootstrapParams are the arguments a custom bootstrap command gets after
// its own words: Patroni's --scope and --datadir (unless no_params), then
// --<key>=<value> for each other key of the section, in key order.
func bootstrapParams(scope, dataDir string, m config.BootstrapMethod) []string {
	var out []string
	if !m.NoParams {
		out = append(out, "--scope="+scope, "--datadir="+dataDir)
	}
	keys := make([]string, 0, len(m.Params))
	for k := range m.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, fmt.Sprintf("--%s=%v", k, m.Params[k]))
	}
	return out
}
