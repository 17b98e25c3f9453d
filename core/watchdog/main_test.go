package watchdog

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// fencerEnv makes the test binary the fencing process when it is run with
// FenceArg, as the custos binary is: the process driver's tests run the
// real fencer without building custos.
const fencerEnv = "CUSTOS_WATCHDOG_TEST_FENCER"

func TestMain(m *testing.M) {
	if os.Getenv(fencerEnv) == "1" && len(os.Args) > 1 && os.Args[1] == FenceArg {
		os.Exit(FenceMain(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Setenv(fencerEnv, "1")
	// A race-enabled fencer would otherwise sleep a second before it exits.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	goleak.VerifyTestMain(m)
}

// syncBuffer collects the fencing process's stderr, written by os/exec's
// goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
