package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/custos-ha/custos/core/callbacks"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/postgres"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
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
	return l.finishRestored(ctx, name, setup)
}

// pluginBootstrap creates a new cluster with the bootstrap plugin serving
// the method ([bootstrap.<name>] without a command): the section's keys
// but recovery_conf go to the plugin; recovery_conf names the recovery
// target (recovery_target, _time, _lsn, _xid, _name, _inclusive, _action,
// _timeline), and the plugin gives the restore_command.
func (l *local) pluginBootstrap(ctx context.Context, name string, m config.BootstrapMethod) error {
	if l.plugins == nil {
		return fmt.Errorf("bootstrap method %s: no plugin host", name)
	}
	if m.KeepExistingRecoveryConf || m.NoParams {
		return fmt.Errorf("bootstrap.%s: keep_existing_recovery_conf and no_params apply to a command; a bootstrap plugin sets the recovery itself", name)
	}
	target, err := bootstrapTarget(m.RecoveryConf)
	if err != nil {
		return fmt.Errorf("bootstrap.%s.recovery_conf: %w", name, err)
	}
	section, err := json.Marshal(map[string]any(m.Params))
	if err != nil {
		return fmt.Errorf("bootstrap.%s: %w", name, err)
	}
	creator, _, done, err := l.plugins.OpenBootstrap(ctx, name)
	if err != nil {
		return fmt.Errorf("bootstrap method %s: %w", name, err)
	}
	defer done()
	l.logger.Info("creating the new cluster with a bootstrap plugin", "method", name)
	res, err := creator.CreateCluster(ctx, bootstrap.Request{
		Method: name, Scope: l.scope, Member: l.member, DataDir: l.pg.DataDir(),
		Config: section, BinDir: l.binDir, Target: target,
	}, func(p bootstrap.Progress) {
		l.logger.Info("bootstrap progress", "method", name, "percent", p.Percent, "message", p.Message)
	})
	if err != nil {
		return fmt.Errorf("bootstrap method %s: %w", name, err)
	}
	setup := postgres.Setup{ArchiveOff: true}
	if p := bootstrap.RecoveryParameters(target, res); len(p) > 0 {
		setup.Recovery = p
	}
	return l.finishRestored(ctx, name, setup)
}

// bootstrapTarget reads a recovery target from recovery_conf settings;
// nil when they name none. A setting a bootstrap plugin's target cannot
// carry is refused, named.
func bootstrapTarget(conf config.Table) (*bootstrap.Target, error) {
	if len(conf) == 0 {
		return nil, nil
	}
	var t bootstrap.Target
	for k, v := range conf {
		s := fmt.Sprint(v)
		switch k {
		case "recovery_target":
			if s != "immediate" {
				return nil, fmt.Errorf("recovery_target %q: only 'immediate'", s)
			}
			t.Immediate = true
		case "recovery_target_time":
			at, err := parsePGTime(s)
			if err != nil {
				return nil, fmt.Errorf("recovery_target_time: %w", err)
			}
			t.Time = at
		case "recovery_target_lsn":
			t.LSN = s
		case "recovery_target_xid":
			x, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("recovery_target_xid %q: not a transaction id", s)
			}
			t.XID = x
		case "recovery_target_name":
			t.Name = s
		case "recovery_target_inclusive":
			b, err := strconv.ParseBool(s)
			if err != nil {
				return nil, fmt.Errorf("recovery_target_inclusive %q: not a boolean", s)
			}
			t.Exclusive = !b
		case "recovery_target_action":
			t.Action = s
		case "recovery_target_timeline":
			t.Timeline = s
		default:
			return nil, fmt.Errorf("%s: not a recovery target setting (a bootstrap plugin sets restore_command itself)", k)
		}
	}
	if err := t.Check(); err != nil {
		return nil, err
	}
	return &t, nil
}

// parsePGTime reads a timestamp as PostgreSQL's recovery_target_time
// takes it: RFC 3339, or "2006-01-02 15:04:05[.frac][zone]".
func parsePGTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999 MST"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: not a time with its zone (e.g. 2026-12-08 10:00:00+00)", s)
}

// finishRestored starts a cluster a custom bootstrap restored, with
// archive_mode off and the setup's recovery settings, waits for the end of
// its recovery, creates the roles, runs post_bootstrap and restarts it
// with the configuration in effect.
func (l *local) finishRestored(ctx context.Context, name string, setup postgres.Setup) error {
	if err := l.pg.Configure(setup); err != nil {
		return fmt.Errorf("bootstrap method %s: %w", name, err)
	}
	err := l.pg.Start(ctx, l.startTimeout)
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
