package dcstest

import (
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
)

// LaunchBinary starts a built DCS plugin binary over a real go-plugin
// handshake (AutoMTLS on) and returns its identity and the backend it
// serves. The process is killed when the test ends. Use it as the New of a
// Target to run the kit through the binary.
func LaunchBinary(t *testing.T, path string) (sdk.Identity, dcs.Backend) {
	t.Helper()
	id, svc := sdktest.Launch(t, path, sdk.KindDCS, dcs.PluginName, &dcs.Plugin{})
	return id, svc.(dcs.Backend)
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
