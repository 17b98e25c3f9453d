// Command custos-plugin-dcs-consul is custos's Consul DCS plugin: it serves
// the consul backend over go-plugin's gRPC handshake. The host starts it; it
// is not meant to be run by hand.
package main

import (
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"

	"github.com/custos-ha/custos/plugins/dcs-consul/consul"
)

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger("consul")
	dcs.Serve(sdk.Identity{Name: "consul", Version: version, Capabilities: consul.Capabilities()}, consul.New(logger), logger)
}
