// Package sdktest holds what every plugin kind's conformance kit shares:
// starting a built plugin binary over a real go-plugin handshake, and
// killing it.
package sdktest

import (
	"context"
	"os/exec"
	"testing"
	"time"

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
	proc := Start(t, path, kind, name, p)
	return proc.Identity, proc.Service
}

// Process is a plugin binary started by Start.
type Process struct {
	// Identity is what the plugin announced.
	Identity sdk.Identity
	// Service is the dispensed service.
	Service any
	client  *plugin.Client
	cmd     *exec.Cmd
}

// Start is Launch returning the process, so that a test can kill it.
func Start(t *testing.T, path, kind, name string, p plugin.Plugin) *Process {
	t.Helper()
	cmd := exec.Command(path)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {
			sdk.IdentityPluginName: &sdk.IdentityPlugin{},
			name:                   p,
		}},
		Cmd:              cmd,
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
	return &Process{Identity: id, Service: svc, client: client, cmd: cmd}
}

// exitTimeout bounds the wait for a killed process to be gone: SIGKILL
// cannot be caught, so only a machine in trouble takes longer.
const exitTimeout = 10 * time.Second

// Kill ends the process with SIGKILL, as a crash or the OOM killer would:
// nothing of the plugin's own clean-up runs. It returns once the process
// is gone.
func (p *Process) Kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("killing plugin process %d: %v", p.cmd.Process.Pid, err)
	}
	deadline := time.Now().Add(exitTimeout)
	for !p.client.Exited() {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still running %v after SIGKILL", p.cmd.Process.Pid, exitTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}
