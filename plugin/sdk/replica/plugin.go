package replica

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/custos-ha/custos/plugin/sdk"
	replicav1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/replica/v1"
)

// PluginName is the go-plugin name a replica creator is served and
// dispensed under.
const PluginName = sdk.KindReplica

// Plugin is the go-plugin glue: in the plugin process it serves Impl; in the
// host, Dispense returns a *Client.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Creator
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	replicav1.RegisterReplicaServiceServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewClient(replicav1.NewReplicaServiceClient(c)), nil
}

// Serve is the whole main of a replica plugin binary: it serves the creator
// and the plugin's identity (its Kinds are set to "replica"; announce the
// methods under CapMethods) and returns when the host is done with it.
func Serve(id sdk.Identity, impl Creator, logger hclog.Logger) {
	id.Kinds = []string{sdk.KindReplica}
	sdk.Serve(id, plugin.PluginSet{PluginName: &Plugin{Impl: impl}}, logger)
}
