// Command refplugin is a plugin binary for the kit's own tests: it serves
// bootstraptest.Reference as the bootstrap kind and, to check that one
// binary can serve both kinds, a replica creator that serves no method.
package main

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap/bootstraptest"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// noReplica is a replica creator without methods.
type noReplica struct{}

func (noReplica) Validate(_ context.Context, method string, _ []byte) error {
	return fmt.Errorf("method %q: %w", method, replica.ErrUnknownMethod)
}

func (noReplica) CreateReplica(_ context.Context, req replica.Request, _ func(replica.Progress)) error {
	return fmt.Errorf("method %q: %w", req.Method, replica.ErrUnknownMethod)
}

func main() {
	id := sdk.Identity{
		Name:         "bootstrap-reference",
		Kinds:        []string{sdk.KindReplica, sdk.KindBootstrap},
		Version:      "0.0.0-test",
		Capabilities: bootstraptest.ReferenceCapabilities(),
	}
	sdk.Serve(id, plugin.PluginSet{
		replica.PluginName:   &replica.Plugin{Impl: noReplica{}},
		bootstrap.PluginName: &bootstrap.Plugin{Impl: bootstraptest.NewReference()},
	}, nil)
}
