package callbacktest

import (
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
)

// LaunchBinary starts a built callback plugin binary over a real go-plugin
// handshake (AutoMTLS on), checks that it serves the callback kind, and
// returns its identity and the receiver it serves (a *callback.Client). The
// process is killed when the test ends.
func LaunchBinary(t *testing.T, path string) (sdk.Identity, callback.Receiver) {
	t.Helper()
	id, svc := sdktest.Launch(t, path, sdk.KindCallback, callback.PluginName, &callback.Plugin{})
	return id, svc.(callback.Receiver)
}

// StartBinary is LaunchBinary returning the process, so that a test can
// kill it (sdktest.Process.Kill) as a crash would; its Service is the
// callback.Receiver.
func StartBinary(t *testing.T, path string) *sdktest.Process {
	t.Helper()
	return sdktest.Start(t, path, sdk.KindCallback, callback.PluginName, &callback.Plugin{})
}
