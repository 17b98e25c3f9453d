//go:build !linux

package watchdog

import (
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
)

var errPlatform = errors.New("not supported on this platform")

func newDevice(path string) driver {
	return unsupported{name: "watchdog device " + path, err: fmt.Errorf("watchdog device %s: %w", path, errPlatform)}
}

func newProcess(string, io.Writer, hclog.Logger) driver {
	return unsupported{name: "fencing process", err: fmt.Errorf("fencing process: %w", errPlatform)}
}

// FenceMain is the fencing process; it needs Linux.
func FenceMain(stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "custos %s: %v\n", FenceArg, errPlatform)
	return fenceExitUsage
}
