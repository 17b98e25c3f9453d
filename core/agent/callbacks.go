package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/callbacks"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/plugin/sdk"
)

// callbackCloseTimeout bounds how long a stopping agent goes on
// delivering the events still queued (the last on_stop among them).
const callbackCloseTimeout = 30 * time.Second

// openCallbacks starts the delivery of lifecycle events: the scripts of
// [postgresql.callbacks] (the built-in exec callback) and every
// [callback.<name>] plugin, whose section the plugin validates first (a
// problem stops the agent, naming the key). It returns nil when none is
// configured; close closes the plugins.
func openCallbacks(ctx context.Context, host *plugins.Host, cfg *config.Config, logger hclog.Logger) (d *callbacks.Dispatcher, closeAll func(), err error) {
	var (
		sinks   []callbacks.Sink
		opened  []*plugins.SupervisedCallback
		cleanup = func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, p := range opened {
				_ = p.Close(cctx)
			}
		}
	)
	ex, err := callbacks.NewExec(cfg.PostgreSQL.Callbacks.Scripts(), logger.Named("callback.exec"))
	if err != nil {
		return nil, nil, fmt.Errorf("postgresql.callbacks: %w", err)
	}
	if !ex.Empty() {
		sinks = append(sinks, callbacks.Sink{Name: config.BuiltinCallbackName, Receiver: ex, Timeout: cfg.PostgreSQL.Callbacks.Timeout})
	}
	for _, name := range cfg.CallbackNames() {
		sec := cfg.Callback[name]
		data, err := sec.ConfigJSON()
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("callback.%s: %w", name, err)
		}
		r, err := host.OpenCallback(ctx, name)
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("callback.%s: %w", name, err)
		}
		opened = append(opened, r)
		var cfgErr *sdk.ConfigError
		switch err := r.Validate(ctx, data); {
		case errors.As(err, &cfgErr):
			cleanup()
			var out config.Problems
			for _, p := range cfgErr.Problems {
				out = append(out, cfg.CallbackProblem(name, p.Path, p.Message))
			}
			return nil, nil, out
		case err != nil:
			cleanup()
			return nil, nil, fmt.Errorf("callback.%s: the plugin could not check its section: %w", name, err)
		}
		sinks = append(sinks, callbacks.Sink{Name: name, Receiver: r, Config: data, Timeout: sec.Timeout})
	}
	if len(sinks) == 0 {
		return nil, func() {}, nil
	}
	d, err = callbacks.NewDispatcher(callbacks.Options{Scope: cfg.Scope, Member: cfg.Name, Logger: logger.Named("callbacks")}, sinks...)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return d, func() {
		cctx, cancel := context.WithTimeout(context.Background(), callbackCloseTimeout)
		defer cancel()
		if err := d.Close(cctx); err != nil {
			logger.Warn("callbacks: stopping", "error", err)
		}
		cleanup()
	}, nil
}

// newHooks returns the runner of pre_promote, before_stop and
// post_bootstrap; nil when none is configured.
func newHooks(cfg *config.Config, logger hclog.Logger) (*callbacks.HookRunner, error) {
	cmds := map[string]string{
		callbacks.HookPrePromote:    cfg.PostgreSQL.PrePromote,
		callbacks.HookBeforeStop:    cfg.PostgreSQL.BeforeStop,
		callbacks.HookPostBootstrap: cfg.Bootstrap.PostBootstrap,
	}
	if cmds[callbacks.HookPrePromote] == "" && cmds[callbacks.HookBeforeStop] == "" && cmds[callbacks.HookPostBootstrap] == "" {
		return nil, nil
	}
	return callbacks.NewHookRunner(cmds, cfg.PostgreSQL.Callbacks.Timeout, logger.Named("hooks"))
}

// callbackStatus is the delivery of each callback as /patroni shows it.
func callbackStatus(d *callbacks.Dispatcher) []api.CallbackStatus {
	if d == nil {
		return nil
	}
	var out []api.CallbackStatus
	for _, s := range d.Status() {
		cs := api.CallbackStatus{Name: s.Name, Delivered: s.Delivered, Failed: s.Failed, Queued: s.Queued}
		last, ok := s.LastDelivered, true
		if f := s.LastFailed; f != nil && (last == nil || f.Finished.After(last.Finished)) {
			last, ok = f, false
		}
		if last != nil {
			cs.Last = &api.CallbackEvent{Seq: last.Event.Seq, Action: last.Event.Action, Role: last.Event.Role,
				At: api.Timestamp{Time: last.Finished}, OK: ok}
		}
		if f := s.LastFailed; f != nil {
			cs.LastError = f.Error
		}
		out = append(out, cs)
	}
	return out
}
