package zookeeper

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain starts the test server when built with the integration tag (see
// startServer) and checks that no goroutine outlives the tests.
func TestMain(m *testing.M) {
	stop, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}
