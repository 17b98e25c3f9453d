// Command custos-plugin-replica-basebackup is custos's pg_basebackup
// replica method: it serves the "basebackup" method over go-plugin's gRPC
// handshake. The host starts it; it is not meant to be run by hand.
package main

import (
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"

	"github.com/custos-ha/custos/plugins/replica-basebackup/basebackup"
)

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger("basebackup")
	replica.Serve(sdk.Identity{Name: basebackup.Method, Version: version, Capabilities: basebackup.Capabilities()},
		basebackup.New(logger), logger)
}
