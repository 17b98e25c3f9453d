package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunCommandCancelKillsTheGroup(t *testing.T) {
	first, _, err := runUntilLine(t, "with-child")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled RunCommand = %v, want context.Canceled", err)
	}
	pidText, ok := strings.CutPrefix(first, "child ")
	if !ok {
		t.Fatalf("helper said %q", first)
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the tool's child %d survived the cancel", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running reports whether pid is a live process (not gone, not a zombie
// waiting for a reaper).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}
