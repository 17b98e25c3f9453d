package dcstest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// LaunchBinary starts a built DCS plugin binary over a real go-plugin
// handshake (AutoMTLS on) and returns its identity and the backend it
// serves. The process is killed when the test ends. Use it as the New of a
// Target to run the kit through the binary.
func LaunchBinary(t *testing.T, path string) (sdk.Identity, dcs.Backend) {
	t.Helper()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {
			sdk.IdentityPluginName: &sdk.IdentityPlugin{},
			dcs.PluginName:         &dcs.Plugin{},
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
	if !id.Serves(sdk.KindDCS) {
		t.Fatalf("plugin %s (%s) does not serve kind dcs", path, id)
	}
	raw, err = rpc.Dispense(dcs.PluginName)
	if err != nil {
		t.Fatalf("dispensing dcs of %s: %v", path, err)
	}
	return id, raw.(dcs.Backend)
}

// BinaryTarget builds a Target whose every client is a new process of the
// plugin binary, as every agent runs its own plugin process.
func BinaryTarget(t *testing.T, path string, config []byte) Target {
	t.Helper()
	id, _ := LaunchBinary(t, path)
	return Target{
		New: func(t *testing.T) dcs.Backend {
			_, b := LaunchBinary(t, path)
			return b
		},
		Config:       config,
		Capabilities: id.Capabilities,
	}
}
