package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

const (
	// pluginOpenTimeout bounds starting and configuring the DCS plugin.
	pluginOpenTimeout = 30 * time.Second
	// pluginCloseTimeout bounds closing the plugin's connections.
	pluginCloseTimeout = 2 * time.Second
	// readGrace is added to retry_timeout for one read: the plugin bounds
	// its own attempt by retry_timeout and then says why it failed.
	readGrace = 2 * time.Second
)

// dcsReader reads the demo cluster through the etcd3 plugin, as custosctl
// and the agents do.
type dcsReader struct {
	host *plugins.Host
	b    dcs.Backend
}

func openReader(ctx context.Context, pluginDir, etcdEndpoint string, logger hclog.Logger) (*dcsReader, error) {
	host, err := plugins.NewHost(plugins.Options{Logger: logger, Dir: pluginDir})
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, pluginOpenTimeout)
	defer cancel()
	b, err := host.OpenDCS(ctx, "etcd3")
	if err != nil {
		host.Shutdown()
		return nil, fmt.Errorf("dcs etcd3: %w", err)
	}
	r := &dcsReader{host: host, b: b}
	err = b.Configure(ctx, dcs.ConfigureRequest{
		Scope:     demoScope,
		Namespace: config.DefaultNamespace,
		// The reader never writes a member or leader key; the name only
		// has to be one no agent uses.
		Member:       "custos-demo-" + strconv.Itoa(os.Getpid()),
		TTL:          demoTTL * time.Second,
		RetryTimeout: demoRetryTimeout * time.Second,
		Config:       []byte(`{"hosts":[` + strconv.Quote(etcdEndpoint) + `]}`),
	})
	// An unreachable store is reported by the reads that follow.
	if err != nil && !errors.Is(err, dcs.ErrUnavailable) {
		r.Close()
		return nil, fmt.Errorf("configuring dcs etcd3: %w", err)
	}
	return r, nil
}

// Read reads the cluster; malformed values are read as cluster.FromDCS
// documents.
func (r *dcsReader) Read(ctx context.Context) (*cluster.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, demoRetryTimeout*time.Second+readGrace)
	defer cancel()
	raw, err := r.b.GetCluster(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading cluster %s from dcs etcd3: %w", demoScope, err)
	}
	c, _ := cluster.FromDCS(raw)
	return c, nil
}

// Close ends the plugin process.
func (r *dcsReader) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), pluginCloseTimeout)
	defer cancel()
	_ = r.b.Close(ctx)
	r.host.Shutdown()
}
