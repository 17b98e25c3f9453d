// Command custos-plugin-dcs-zookeeper is custos's ZooKeeper DCS plugin: it
// serves the zookeeper backend over go-plugin's gRPC handshake. The host
// starts it; it is not meant to be run by hand.
package main

import (
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"

	"github.com/custos-ha/custos/plugins/dcs-zookeeper/zookeeper"
)

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger("zookeeper")
	dcs.Serve(sdk.Identity{Name: "zookeeper", Version: version}, zookeeper.New(logger), logger)
}
