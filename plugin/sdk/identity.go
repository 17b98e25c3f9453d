package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	identityv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/identity/v1"
)

// IdentityPluginName is the go-plugin name under which every plugin binary
// serves its identity.
const IdentityPluginName = "identity"

// IdentityPlugin is the go-plugin glue of the identity service. On the
// plugin side it serves Identity; on the host side Dispense returns an
// *IdentityClient.
type IdentityPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Identity Identity
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *IdentityPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	identityv1.RegisterIdentityServiceServer(s, &identityServer{id: p.Identity})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *IdentityPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &IdentityClient{client: identityv1.NewIdentityServiceClient(c)}, nil
}

type identityServer struct {
	identityv1.UnimplementedIdentityServiceServer
	id Identity
}

func (s *identityServer) GetIdentity(context.Context, *identityv1.GetIdentityRequest) (*identityv1.GetIdentityResponse, error) {
	return &identityv1.GetIdentityResponse{
		Name:         s.id.Name,
		Kinds:        s.id.Kinds,
		Version:      s.id.Version,
		Capabilities: s.id.Capabilities,
	}, nil
}

// IdentityClient asks a plugin who it is.
type IdentityClient struct {
	client identityv1.IdentityServiceClient
}

// Identity calls the plugin's identity service.
func (c *IdentityClient) Identity(ctx context.Context) (Identity, error) {
	resp, err := c.client.GetIdentity(ctx, &identityv1.GetIdentityRequest{})
	if err != nil {
		return Identity{}, FromStatus(err, nil)
	}
	return Identity{
		Name:         resp.GetName(),
		Kinds:        resp.GetKinds(),
		Version:      resp.GetVersion(),
		Capabilities: resp.GetCapabilities(),
	}, nil
}
