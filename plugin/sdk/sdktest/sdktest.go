// Package sdktest holds what every plugin kind's conformance kit shares:
// starting a built plugin binary over a real go-plugin handshake.
package sdktest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Launch starts a built plugin binary over a real go-plugin handshake
// (AutoMTLS on), checks that its identity serves kind, and returns the
// identity and the dispensed service named name (p is its go-plugin glue).
// The process is killed when the test ends.
func Launch(t *testing.T, path, kind, name string, p plugin.Plugin) (sdk.Identity, any) {
	t.Helper()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {
			sdk.IdentityPluginName: &sdk.IdentityPlugin{},
			name:                   p,
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
	if !id.Serves(kind) {
		t.Fatalf("plugin %s (%s) does not serve kind %s", path, id, kind)
	}
	svc, err := rpc.Dispense(name)
	if err != nil {
		t.Fatalf("dispensing %s of %s: %v", name, path, err)
	}
	return id, svc
}
