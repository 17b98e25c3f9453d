package agent

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/controller"
	"github.com/custos-ha/custos/core/dcs"
	"github.com/custos-ha/custos/core/ha"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
)

// operator carries out the REST API's mutating requests (api.Operator) on
// top of the HA loop, the DCS store and the peers' REST API.
type operator struct {
	ctrl   *controller.Controller
	store  *dcs.Store
	peers  peers
	logger hclog.Logger
	// reload re-reads the configuration file (POST /reload, as SIGHUP).
	// It must not block: the request is answered 202 at once.
	reload func()
}

var _ api.Operator = (*operator)(nil)

func (o *operator) Request(ctx context.Context, r ha.Request, wait bool) (ha.Reply, error) {
	return o.ctrl.Request(ctx, r, wait)
}

func (o *operator) Reload() {
	if o.reload == nil {
		o.logger.Warn("reload requested, but this agent cannot re-read its configuration file")
		return
	}
	o.reload()
}

// reloadLikeSIGHUP makes POST /reload do exactly what SIGHUP does, as
// Patroni's /reload calls its SIGHUP handler: it signals this process, and
// the SIGHUP handler Run installs (onSIGHUP, active while the REST API
// serves) re-reads the file on its own goroutine, so the request is
// answered at once and reloads never run concurrently.
func reloadLikeSIGHUP(logger hclog.Logger) func() {
	return func() {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			logger.Error("signalling SIGHUP to reload the configuration", "error", err)
		}
	}
}

func (o *operator) ReadCluster(ctx context.Context) (*cluster.Cluster, error) {
	c, _, err := o.store.Read(ctx)
	return c, err
}

func (o *operator) WriteFailover(ctx context.Context, f cluster.Failover, version string) error {
	ctx, cancel := o.callContext(ctx)
	defer cancel()
	if err := o.write(ctx, sdkdcs.KeyFailover, f.Marshal(), version); err != nil {
		return fmt.Errorf("writing /failover: %w", err)
	}
	return nil
}

func (o *operator) WriteConfig(ctx context.Context, data []byte, version string) error {
	ctx, cancel := o.callContext(ctx)
	defer cancel()
	if err := o.write(ctx, sdkdcs.KeyConfig, data, version); err != nil {
		return fmt.Errorf("writing /config: %w", err)
	}
	return nil
}

// write sets key over version, or unconditionally without one.
func (o *operator) write(ctx context.Context, key sdkdcs.Key, data []byte, version string) error {
	b := o.store.Backend()
	if version == "" {
		return b.Set(ctx, key, data)
	}
	_, err := b.CompareAndSet(ctx, key, data, version)
	return err
}

// callContext bounds a DCS write by retry_timeout, as the store bounds
// its own calls.
func (o *operator) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := o.ctrl.State().Dynamic.RetryTimeout.Duration()
	if timeout <= 0 {
		// Before the first cycle.
		timeout = config.DefaultRetryTimeout.Duration()
	}
	return context.WithTimeout(ctx, timeout)
}

func (o *operator) PeerStatus(ctx context.Context, m cluster.Member) (ha.Peer, error) {
	return o.peers.Status(ctx, m)
}

func (o *operator) Wake() { o.ctrl.Wake() }

// FailsafeHeartbeat implements api.Operator.
func (o *operator) FailsafeHeartbeat(leader string) { o.ctrl.FailsafeHeartbeat(leader) }
