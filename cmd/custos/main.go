// Command custos is the custos agent: one runs beside each PostgreSQL
// server. See core/agent.
package main

import (
	"os"

	"github.com/custos-ha/custos/core/agent"
)

func main() { os.Exit(agent.Main(os.Args[1:], os.Stdout, os.Stderr)) }
