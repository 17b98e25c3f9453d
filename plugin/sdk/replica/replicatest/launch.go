package replicatest

import (
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
)

// LaunchBinary starts a built replica plugin binary over a real go-plugin
// handshake (AutoMTLS on) and returns its identity and the creator it
// serves. The process is killed when the test ends.
func LaunchBinary(t *testing.T, path string) (sdk.Identity, replica.Creator) {
	t.Helper()
	id, svc := sdktest.Launch(t, path, sdk.KindReplica, replica.PluginName, &replica.Plugin{})
	return id, svc.(replica.Creator)
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
