// Command consul is Consul's command line, built from Consul's Go module for
// custos's tests (go install refuses Consul because of the replace
// directives in its go.mod). It runs the same commands as the released
// binary; the tests use "consul agent -dev".
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	"github.com/hashicorp/consul/command"
	"github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/version"
	mcli "github.com/mitchellh/cli"
)

func main() {
	os.Exit(run())
}

func run() int {
	// Consul's packages log through the standard logger before the agent
	// sets up its own; the released binary discards that output too.
	log.SetOutput(io.Discard)

	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	cmds := command.RegisteredCommands(ui)
	names := make([]string, 0, len(cmds))
	for name := range cmds {
		names = append(names, name)
	}
	c := &mcli.CLI{
		Args:        os.Args[1:],
		Commands:    cmds,
		Name:        "consul",
		HelpFunc:    mcli.FilteredHelpFunc(names, mcli.BasicHelpFunc("consul")),
		HelpWriter:  os.Stdout,
		ErrorWriter: os.Stderr,
	}
	if c.IsVersion() {
		return version.New(ui).Run(nil)
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "running consul: %v\n", err)
		return 1
	}
	return code
}
