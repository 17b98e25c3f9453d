package callback

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/custos-ha/custos/plugin/sdk"
	callbackv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/callback/v1"
)

// PluginName is the go-plugin name a callback receiver is served and
// dispensed under.
const PluginName = sdk.KindCallback

// Plugin is the go-plugin glue: in the plugin process it serves Impl; in the
// host, Dispense returns a *Client.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Receiver
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	callbackv1.RegisterCallbackServiceServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewClient(callbackv1.NewCallbackServiceClient(c)), nil
}

// Serve is the whole main of a callback plugin binary: it serves the
// receiver and the plugin's identity (its Kinds are set to "callback"; its
// Name selects the [callback.<name>] section) and returns when the host is
// done with it.
func Serve(id sdk.Identity, impl Receiver, logger hclog.Logger) {
	id.Kinds = []string{sdk.KindCallback}
	sdk.Serve(id, plugin.PluginSet{PluginName: &Plugin{Impl: impl}}, logger)
}
