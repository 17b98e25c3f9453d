// Command custos-plugin-dcs-kubernetes is custos's Kubernetes DCS plugin: it
// serves the Kubernetes backend over go-plugin's gRPC handshake. The host
// starts it; it is not meant to be run by hand.
package main

import (
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"

	"github.com/custos-ha/custos/plugins/dcs-kubernetes/kube"
)

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger(kube.Name)
	dcs.Serve(sdk.Identity{Name: kube.Name, Version: version, Capabilities: kube.Capabilities()}, kube.New(logger), logger)
}
