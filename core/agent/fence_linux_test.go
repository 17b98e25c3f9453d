//go:build linux

package agent

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/watchdog"
)

// The watchdog's fencing process is the custos command with a hidden first
// argument, handled before the flags (which would refuse it).
func TestMainRunsTheFencer(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, watchdog.FenceArg)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Bounded, should the fencer hang: a stuck test is killed.
	timer := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("first line %q (%v), want ready; stderr:\n%s", line, err, stderr.String())
	}
	if _, err := stdin.Write([]byte("feed\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ok" {
		t.Fatalf("answer to feed %q (%v), want ok", line, err)
	}
	stdin.Close() // disarmed: it exits 0
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fencer exit: %v; stderr:\n%s", err, stderr.String())
	}
}
