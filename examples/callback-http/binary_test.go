//go:build integration

package main

import (
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback/callbacktest"
)

// TestBinaryConformance runs the kit through the built binary over a real
// go-plugin handshake, a process per check, as the agent runs it.
func TestBinaryConformance(t *testing.T) {
	path := builder.Path(t)
	callbacktest.RunConformance(t, func(t *testing.T) callbacktest.Setup {
		_, r := callbacktest.LaunchBinary(t, path)
		return newHook(t).setup(r)
	})
}

func TestBinaryIdentity(t *testing.T) {
	id, _ := callbacktest.LaunchBinary(t, builder.Path(t))
	if id.Name != name || !id.Serves(sdk.KindCallback) || len(id.Kinds) != 1 || id.Version != version {
		t.Errorf("identity = %+v", id)
	}
}
