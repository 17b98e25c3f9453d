// Command custos-plugin-replica-pgbackrest is custos's pgBackRest replica
// method: it serves the "pgbackrest" method over go-plugin's gRPC
// handshake, restoring a replica's data directory from a backup. The host
// starts it; it is not meant to be run by hand.
package main

import (
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"

	"github.com/custos-ha/custos/plugins/replica-pgbackrest/pgbackrest"
)

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger("pgbackrest")
	replica.Serve(sdk.Identity{Name: pgbackrest.Method, Version: version, Capabilities: pgbackrest.Capabilities()},
		pgbackrest.New(logger), logger)
}
