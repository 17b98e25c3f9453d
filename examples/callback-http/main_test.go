package main

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk/sdktest"
)

// builder builds the plugin binary for the tests that run it; unit tests
// never call it.
var builder = sdktest.NewBuilder(name)

func TestMain(m *testing.M) {
	code := m.Run()
	builder.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
