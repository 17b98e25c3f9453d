package bootstrap

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/custos-ha/custos/plugin/sdk"
	bootstrapv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/bootstrap/v1"
)

// PluginName is the go-plugin name a bootstrap creator is served and
// dispensed under.
const PluginName = sdk.KindBootstrap

// Plugin is the go-plugin glue: in the plugin process it serves Impl; in the
// host, Dispense returns a *Client.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Creator
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	bootstrapv1.RegisterBootstrapServiceServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewClient(bootstrapv1.NewBootstrapServiceClient(c)), nil
}

// Serve is the whole main of a bootstrap plugin binary: it serves the
// creator and the plugin's identity (its Kinds are set to "bootstrap";
// announce the methods under CapMethods and CapTargets) and returns when
// the host is done with it.
//
// A binary that serves the replica kind as well (a backup tool restoring
// both replicas and new clusters) calls sdk.Serve itself, with both kinds
// in its identity's Kinds and both plugins in the set:
//
//	id.Kinds = []string{sdk.KindReplica, sdk.KindBootstrap}
//	sdk.Serve(id, plugin.PluginSet{
//		replica.PluginName:   &replica.Plugin{Impl: r},
//		bootstrap.PluginName: &bootstrap.Plugin{Impl: b},
//	}, logger)
func Serve(id sdk.Identity, impl Creator, logger hclog.Logger) {
	id.Kinds = []string{sdk.KindBootstrap}
	sdk.Serve(id, plugin.PluginSet{PluginName: &Plugin{Impl: impl}}, logger)
}
