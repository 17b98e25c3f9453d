// Command custosctl is the custos operator's command line. See core/ctl.
package main

import (
	"os"

	"github.com/custos-ha/custos/core/ctl"
)

func main() { os.Exit(ctl.Main(os.Args[1:], os.Stdout, os.Stderr)) }
