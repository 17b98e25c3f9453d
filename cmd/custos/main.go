// Command custos is the custos agent: one runs beside each PostgreSQL
// server. See core/agent.
package main

import (
	"os"
	"runtime"

	"github.com/custos-ha/custos/core/agent"
)

func main() {
	// The agent runs Go code on one CPU at a time unless GOMAXPROCS says
	// otherwise. Its work is a short cycle every loop_wait and REST
	// requests of microseconds; with a P per core, each wake-up handed
	// work to another OS thread and cost a quarter more CPU while idle
	// (docs/benchmarks.md), and one core serves health checks at tens of
	// thousands of requests per second. Set before anything starts; the
	// host passes the same default to its plugins (core/plugins).
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(agent.Main(os.Args[1:], os.Stdout, os.Stderr))
}
