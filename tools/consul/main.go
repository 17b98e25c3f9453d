// Command consul is Consul's agent, built from Consul's Go module for
// custos's tests (go install refuses Consul because of the replace
// directives in its go.mod). The tests only run "consul agent -dev", so
// this binary carries the agent command alone: the other commands of the
// released CLI would add about 180 packages to a cold build.
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	mcli "github.com/mitchellh/cli"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "agent" {
		fmt.Fprintln(os.Stderr, "usage: consul agent [options] (this build for custos's tests runs the agent only)")
		os.Exit(1)
	}
	// Consul's packages log through the standard logger before the agent
	// sets up its own; the released binary discards that output too.
	log.SetOutput(io.Discard)
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	os.Exit(agent.New(ui).Run(os.Args[2:]))
}
