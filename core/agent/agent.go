package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/api/client"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/controller"
	"github.com/custos-ha/custos/core/dcs"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/core/postgres"
	"github.com/custos-ha/custos/core/reaper"
	"github.com/custos-ha/custos/plugin/sdk"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Run runs the agent until ctx is cancelled, then shuts down in order:
// the HA loop stops PostgreSQL and releases the leader key, then the REST
// API and the plugins stop. exe is the path of the running custos binary
// (for the default plugin_dir).
func Run(ctx context.Context, path string, cfg *config.Config, exe string, logger hclog.Logger) error {
	logger = logger.With("member", cfg.Name)
	if err := checkPrograms(pgConfig(config.Merge(cfg.Dynamic(), cfg))); err != nil {
		return config.Problems{{Path: "postgresql.bin_dir", Message: err.Error()}}
	}
	ln, err := listenRESTAPI(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }() // Serve closes it too; this covers an early return
	stopReaper := reaper.Start(logger.Named("reaper"))
	defer stopReaper()

	host, err := newHost(cfg, exe, logger)
	if err != nil {
		return err
	}
	defer host.Shutdown()

	dyn := cfg.Dynamic()
	backend, err := openDCS(ctx, host, cfg, dyn, logger)
	if err != nil {
		return err
	}
	store := dcs.New(backend, logger.Named("dcs"), dyn.RetryTimeout.Duration())
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), dyn.RetryTimeout.Duration())
		defer cancel()
		_ = store.Close(cctx)
	}()

	pgc := pgConfig(config.Merge(dyn, cfg))
	pg, err := postgres.New(pgc, logger.Named("postgres"))
	if err != nil {
		return fmt.Errorf("postgresql configuration: %w", err)
	}
	defer pg.Close()
	settings := &settings{path: path, pg: pg, logger: logger, cfg: cfg, applied: pgc}
	if err := pg.WritePgpass(); err != nil {
		return fmt.Errorf("writing the pgpass file: %w", err)
	}

	peerClient, err := client.New(clientOptions(cfg))
	if err != nil {
		return fmt.Errorf("REST client for peers: %w", err)
	}
	defer peerClient.Close()

	if probs := validateBootstrapPlugin(ctx, cfg, host); len(probs) > 0 {
		return probs
	}
	dispatcher, closeCallbacks, err := openCallbacks(ctx, host, cfg, logger)
	if err != nil {
		return err
	}
	// Before the plugin host shuts down (defers run last in, first out):
	// the events still queued, the last on_stop among them, go out first.
	defer closeCallbacks()
	var events controller.Events
	if dispatcher != nil {
		events = dispatcher
	}
	hookRunner, err := newHooks(cfg, logger)
	if err != nil {
		return err
	}
	var hooks controller.Hooks
	if hookRunner != nil {
		hooks = hookRunner
	}

	replicas := newReplicaCreator(host, cfg, pg, logger.Named("replica"))
	noLeader := replicas.NoLeaderMethods(ctx)
	if len(noLeader) > 0 {
		logger.Info("replica methods that need no running leader", "methods", noLeader)
	}

	latest := &api.Latest{}
	fence := newFence(cfg.Watchdog, exe, pg, logger.Named("watchdog"))
	var wd controller.Watchdog
	if fence != nil {
		wd = fence
		defer fence.Close()
	}
	ctrl := controller.New(controller.Options{
		Name:      cfg.Name,
		Scope:     cfg.Scope,
		ConnURL:   pg.ConnURL(),
		APIURL:    apiURL(cfg),
		Version:   WireVersion,
		Tags:      tags(cfg.Tags),
		Bootstrap: dyn,
		Local:     cfg,
		Publish: func(st *controller.State) {
			snap := snapshotOf(st, cfg.Scope, cfg.Name, problemsOf(st))
			snap.Status.WatchdogFailed = fence.failed()
			snap.Status.Custos.Watchdog = fence.status()
			snap.Status.Custos.Callbacks = callbackStatus(dispatcher)
			latest.Publish(snap)
		},
		ApplyDynamic:       settings.applyPostgres,
		Watchdog:           wd,
		Events:             events,
		Hooks:              hooks,
		CloneWithoutLeader: len(noLeader) > 0,
	}, store, &local{
		pg:           pg,
		replicas:     replicas,
		logger:       logger.Named("postgres"),
		startTimeout: cfg.PostgreSQL.PGCtlTimeout,
		hooks:        hookRunner,
		scope:        cfg.Scope,
		member:       cfg.Name,
		binDir:       cfg.PostgreSQL.BinDir,
		bootstrap:    cfg.Bootstrap,
		plugins:      host,
	}, peers{peerClient}, logger.Named("ha"))

	settings.mu.Lock()
	settings.ctrl = ctrl
	settings.mu.Unlock()
	stopHUP := onSIGHUP(func() {
		rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
		defer cancel()
		_ = settings.reload(rctx)
	})
	defer stopHUP()

	op := &operator{ctrl: ctrl, store: store, peers: peers{peerClient}, logger: logger.Named("api"), reload: reloadLikeSIGHUP(logger)}
	server := api.New(serverConfig(cfg), latest, logger.Named("api"), api.WithOperator(op), api.WithLivePositions(livePositions(pg)))
	apiCtx, stopAPI := context.WithCancel(context.Background())
	// The REST API failing for good stops the agent too (non-zero exit):
	// the other members ask it in leader races and in failsafe mode, and
	// health checks would go on timing out against a running agent.
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	defer stopCtrl()
	var wg sync.WaitGroup
	var apiErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		apiErr = server.Serve(apiCtx, ln)
		if apiErr != nil && apiCtx.Err() == nil {
			logger.Error("the REST API stopped: shutting down", "error", apiErr)
			stopCtrl()
		}
	}()
	logger.Info("custos agent started", "version", Version, "scope", cfg.Scope, "restapi", ln.Addr().String(),
		"dcs", cfg.DCSName(), "data_dir", cfg.PostgreSQL.DataDir)

	err = ctrl.Run(ctrlCtx)
	stopAPI()
	wg.Wait()
	logger.Info("custos agent stopped")
	return errors.Join(err, apiErr)
}

// newHost starts the plugin host on the configured plugin directory.
func newHost(cfg *config.Config, exe string, logger hclog.Logger) (*plugins.Host, error) {
	sums := map[string]string{}
	for name, p := range cfg.Plugins {
		if p.SHA256 != "" {
			sums[name] = p.SHA256
		}
	}
	host, err := plugins.NewHost(plugins.Options{Logger: logger, Dir: cfg.PluginDirFor(exe), Checksums: sums})
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	return host, nil
}

// openDCS starts and configures the DCS plugin. A store that cannot be
// reached is no reason to stop: the HA loop treats it as DCS loss and the
// plugin keeps trying; a bad configuration section is.
func openDCS(ctx context.Context, host *plugins.Host, cfg *config.Config, dyn config.Dynamic, logger hclog.Logger) (sdkdcs.Backend, error) {
	backend, err := host.OpenDCS(ctx, cfg.DCSName())
	if err != nil {
		return nil, fmt.Errorf("dcs.%s: %w", cfg.DCSName(), err)
	}
	section, err := cfg.DCSConfigJSON()
	if err != nil {
		_ = backend.Close(ctx)
		return nil, fmt.Errorf("dcs.%s: %w", cfg.DCSName(), err)
	}
	err = backend.Configure(ctx, sdkdcs.ConfigureRequest{
		Scope:        cfg.Scope,
		Namespace:    cfg.Namespace,
		Member:       cfg.Name,
		TTL:          dyn.TTL.Duration(),
		RetryTimeout: dyn.RetryTimeout.Duration(),
		Config:       section,
	})
	var cfgErr *sdk.ConfigError
	switch {
	case errors.As(err, &cfgErr):
		_ = backend.Close(ctx)
		return nil, dcsProblems(cfg, cfgErr)
	case errors.Is(err, sdkdcs.ErrUnavailable):
		logger.Warn("the DCS is not reachable yet; the HA loop keeps trying", "dcs", cfg.DCSName(), "error", err)
	case err != nil:
		_ = backend.Close(ctx)
		return nil, fmt.Errorf("configuring dcs.%s: %w", cfg.DCSName(), err)
	}
	return backend, nil
}

// dcsProblems maps a plugin's configuration problems onto the file.
func dcsProblems(cfg *config.Config, e *sdk.ConfigError) config.Problems {
	var out config.Problems
	for _, p := range e.Problems {
		out = append(out, cfg.DCSProblem(p.Path, p.Message))
	}
	return out
}

// problemsOf lists what an operator should see in /patroni.
func problemsOf(st *controller.State) []string {
	var out []string
	if p := st.Observation.HA.Problem; p != "" {
		out = append(out, p)
	}
	if !st.DCSReachable {
		out = append(out, "the DCS is not accessible")
	}
	return append(out, st.DCSProblems...)
}
