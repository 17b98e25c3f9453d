// Command custos-plugin-replica-pgbackrest is custos's pgBackRest plugin:
// it serves the "pgbackrest" replica method (a replica restored from a
// backup) and the "pgbackrest" bootstrap method (a new cluster restored
// from a backup, to a point in time) over go-plugin's gRPC handshake. The
// host starts it; it is not meant to be run by hand.
package main

import (
	"maps"

	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/replica"

	"github.com/custos-ha/custos/plugins/replica-pgbackrest/pgbackrest"
)

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger("pgbackrest")
	caps := pgbackrest.Capabilities()
	maps.Copy(caps, pgbackrest.BootstrapCapabilities())
	id := sdk.Identity{Name: pgbackrest.Method, Version: version, Capabilities: caps,
		Kinds: []string{sdk.KindReplica, sdk.KindBootstrap}}
	sdk.Serve(id, plugin.PluginSet{
		replica.PluginName:   &replica.Plugin{Impl: pgbackrest.New(logger)},
		bootstrap.PluginName: &bootstrap.Plugin{Impl: pgbackrest.NewBootstrapper(logger)},
	}, logger)
}
