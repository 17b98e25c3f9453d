package dcs

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/custos-ha/custos/plugin/sdk"
	dcsv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/dcs/v1"
)

// PluginName is the go-plugin name a DCS backend is served and dispensed
// under.
const PluginName = sdk.KindDCS

// Plugin is the go-plugin glue: in the plugin process it serves Impl; in the
// host, Dispense returns a *Client.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Backend
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	dcsv1.RegisterDCSServiceServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewClient(dcsv1.NewDCSServiceClient(c)), nil
}

// Serve is the whole main of a DCS plugin binary: it serves the backend and
// the plugin's identity (its Kinds are set to "dcs") and returns when the
// host is done with it.
func Serve(id sdk.Identity, impl Backend, logger hclog.Logger) {
	id.Kinds = []string{sdk.KindDCS}
	sdk.Serve(id, plugin.PluginSet{PluginName: &Plugin{Impl: impl}}, logger)
}
