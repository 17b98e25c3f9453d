package replica

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// helperEnv selects a helper-process mode: the test binary plays the
// external tool in the RunCommand tests.
const helperEnv = "CUSTOS_REPLICA_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	goleak.VerifyTestMain(m)
}

// helper is the fake tool. It never returns in the sleeping modes.
func helper(mode string) int {
	switch mode {
	case "lines":
		fmt.Print("first\r  10/100 kB (10%)\rsecond  \n\nthird")
		return 0
	case "fail":
		fmt.Fprintln(os.Stderr, "something broke")
		return 3
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Hour)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		time.Sleep(time.Hour)
	case "with-child":
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), helperEnv+"=sleep")
		child.Stdout = os.Stdout
		if err := child.Start(); err != nil {
			fmt.Println("start:", err)
			return 1
		}
		fmt.Printf("child %d\n", child.Process.Pid)
		time.Sleep(time.Hour)
	}
	return 2
}
