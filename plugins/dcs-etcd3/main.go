// Command custos-plugin-dcs-etcd3 is custos's etcd v3 DCS plugin: it serves
// the etcd3 backend over go-plugin's gRPC handshake. The host starts it; it
// is not meant to be run by hand.
package main

import (
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"

	"github.com/custos-ha/custos/plugins/dcs-etcd3/etcd3"
)

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger("etcd3")
	dcs.Serve(sdk.Identity{Name: "etcd3", Version: version}, etcd3.New(logger), logger)
}
