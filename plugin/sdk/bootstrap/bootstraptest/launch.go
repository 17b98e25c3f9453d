package bootstraptest

import (
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
)

// LaunchBinary starts a built bootstrap plugin binary over a real
// go-plugin handshake (AutoMTLS on), checks that it serves the bootstrap
// kind, and returns its identity and the creator it serves (a
// *bootstrap.Client). The process is killed when the test ends.
func LaunchBinary(t *testing.T, path string) (sdk.Identity, bootstrap.Creator) {
	t.Helper()
	id, svc := sdktest.Launch(t, path, sdk.KindBootstrap, bootstrap.PluginName, &bootstrap.Plugin{})
	return id, svc.(bootstrap.Creator)
}

// StartBinary is LaunchBinary returning the process, so that a test can
// kill it (sdktest.Process.Kill) as a crash would; its Service is the
// bootstrap.Creator.
func StartBinary(t *testing.T, path string) *sdktest.Process {
	t.Helper()
	return sdktest.Start(t, path, sdk.KindBootstrap, bootstrap.PluginName, &bootstrap.Plugin{})
}

// BinarySetup returns a newSetup for RunConformance that runs each check
// against a new process of the plugin binary (as the host would restart
// it), with Capabilities taken from the binary's identity; base gives the
// rest of the Setup.
func BinarySetup(path string, base func(t *testing.T) Setup) func(t *testing.T) Setup {
	return func(t *testing.T) Setup {
		s := base(t)
		id, c := LaunchBinary(t, path)
		s.Creator = c
		s.Capabilities = id.Capabilities
		return s
	}
}
