package replicatest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// LaunchBinary starts a built replica plugin binary over a real go-plugin
// handshake (AutoMTLS on) and returns its identity and the creator it
// serves. The process is killed when the test ends.
func LaunchBinary(t *testing.T, path string) (sdk.Identity, replica.Creator) {
	t.Helper()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {
			sdk.IdentityPluginName: &sdk.IdentityPlugin{},
			replica.PluginName:     &replica.Plugin{},
		}},
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "plugin",
			Level:  hclog.Info,
			Output: hclog.DefaultOutput,
		}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("starting plugin %s: %v", path, err)
	}
	raw, err := rpc.Dispense(sdk.IdentityPluginName)
	if err != nil {
		t.Fatalf("dispensing identity of %s: %v", path, err)
	}
	id, err := raw.(*sdk.IdentityClient).Identity(context.Background())
	if err != nil {
		t.Fatalf("identity of %s: %v", path, err)
	}
	if !id.Serves(sdk.KindReplica) {
		t.Fatalf("plugin %s (%s) does not serve kind replica", path, id)
	}
	raw, err = rpc.Dispense(replica.PluginName)
	if err != nil {
		t.Fatalf("dispensing replica of %s: %v", path, err)
	}
	return id, raw.(replica.Creator)
}

// BinaryTarget returns target with New replaced by a launcher of the
// plugin binary (a process per subtest, as the host would restart it) and
// Capabilities taken from the binary's identity.
func BinaryTarget(t *testing.T, path string, target Target) Target {
	t.Helper()
	id, _ := LaunchBinary(t, path)
	target.New = func(t *testing.T) replica.Creator {
		_, c := LaunchBinary(t, path)
		return c
	}
	target.Capabilities = id.Capabilities
	return target
}
