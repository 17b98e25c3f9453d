package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

const (
	// pluginOpenTimeout bounds starting and configuring the DCS plugin:
	// the handshake is bounded by the plugin host, Configure only dials.
	pluginOpenTimeout = 30 * time.Second
	// pluginCloseTimeout bounds closing a plugin's connections at exit.
	pluginCloseTimeout = 2 * time.Second
	// readGrace is added to retry_timeout for one read: the plugin bounds
	// its own attempt by retry_timeout and then says why it failed, which
	// beats the bare deadline of the call.
	readGrace = 2 * time.Second
)

// memberName is the member name custosctl configures its DCS plugin with.
// custosctl never writes a member or leader key; the name only has to be
// one no agent uses.
func memberName() string { return "custosctl-" + strconv.Itoa(os.Getpid()) }

// backendOpener hands out a configured DCS backend bound to a cluster;
// tests give one over an in-memory store instead of the plugins.
type backendOpener func(ctx context.Context, scope string) (dcs.Backend, error)

// reader reads and writes clusters through the DCS plugin. A backend is
// bound to one scope, so each cluster gets its own plugin process, started
// on first use and kept until Close (watching re-reads through the same
// one).
type reader struct {
	t *target
	// host runs the plugins; nil when open is set.
	host     *plugins.Host
	open     backendOpener
	member   string
	backends map[string]dcs.Backend
}

func newReader(t *target, logger hclog.Logger) (*reader, error) {
	host, err := plugins.NewHost(plugins.Options{Logger: logger, Dir: t.pluginDir, Checksums: t.checksums})
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	return &reader{t: t, host: host, member: memberName(), backends: map[string]dcs.Backend{}}, nil
}

// openReader is the reader of a command: through the plugins, or through
// the environment's own backends when it has some (tests).
func openReader(e *env, t *target) (*reader, error) {
	if e.dcs != nil {
		return &reader{t: t, open: e.dcs, member: memberName(), backends: map[string]dcs.Backend{}}, nil
	}
	return newReader(t, newLogger(e))
}

// Read reads one cluster. Malformed values do not fail the read: they come
// back as problems, each key read as cluster.FromDCS documents.
func (r *reader) Read(ctx context.Context, scope string) (*cluster.Cluster, []error, error) {
	b, err := r.backend(ctx, scope)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, r.t.retryTimeout+readGrace)
	defer cancel()
	raw, err := b.GetCluster(rctx)
	if err != nil {
		return nil, nil, fmt.Errorf("reading cluster %s from dcs %s: %w", scope, r.t.plugin, err)
	}
	c, problems := cluster.FromDCS(raw)
	return c, problems, nil
}

func (r *reader) backend(ctx context.Context, scope string) (dcs.Backend, error) {
	if b, ok := r.backends[scope]; ok {
		return b, nil
	}
	ctx, cancel := context.WithTimeout(ctx, pluginOpenTimeout)
	defer cancel()
	if r.open != nil {
		b, err := r.open(ctx, scope)
		if err != nil {
			return nil, fmt.Errorf("dcs %s: %w", r.t.plugin, err)
		}
		r.backends[scope] = b
		return b, nil
	}
	b, err := r.host.OpenDCS(ctx, r.t.plugin)
	if err != nil {
		return nil, fmt.Errorf("dcs %s: %w", r.t.plugin, err)
	}
	err = b.Configure(ctx, dcs.ConfigureRequest{
		Scope:        scope,
		Namespace:    r.t.namespace,
		Member:       r.member,
		TTL:          r.t.ttl,
		RetryTimeout: r.t.retryTimeout,
		Config:       r.t.section,
	})
	// An unreachable store is reported by the read that follows, with the
	// plugin's reason.
	if err != nil && !errors.Is(err, dcs.ErrUnavailable) {
		_ = closeBackend(b)
		return nil, r.configureError(err)
	}
	r.backends[scope] = b
	return b, nil
}

// configureError names the keys a plugin rejected: as file lines of the
// configuration when the section came from it.
func (r *reader) configureError(err error) error {
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		return fmt.Errorf("configuring dcs %s: %w", r.t.plugin, err)
	}
	lines := make([]string, 0, len(cfgErr.Problems))
	for _, p := range cfgErr.Problems {
		if r.t.sectionFromConfig {
			lines = append(lines, r.t.cfg.DCSProblem(p.Path, p.Message).String())
		} else {
			key := "dcs." + r.t.plugin
			if p.Path != "" {
				key += "." + p.Path
			}
			lines = append(lines, key+": "+p.Message)
		}
	}
	return fmt.Errorf("the dcs %s plugin rejects its configuration:\n  %s", r.t.plugin, strings.Join(lines, "\n  "))
}

// Close ends every plugin process.
func (r *reader) Close() {
	for _, b := range r.backends {
		_ = closeBackend(b)
	}
	if r.host != nil {
		r.host.Shutdown()
	}
}

func closeBackend(b dcs.Backend) error {
	ctx, cancel := context.WithTimeout(context.Background(), pluginCloseTimeout)
	defer cancel()
	return b.Close(ctx)
}
