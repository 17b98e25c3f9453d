package replica

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"
)

func helperCommand(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

// lines collects RunCommand's lines and signals each one.
type lines struct {
	mu   sync.Mutex
	list []string
	seen chan string
}

func newLines() *lines { return &lines{seen: make(chan string, 100)} }

func (l *lines) add(s string) {
	l.mu.Lock()
	l.list = append(l.list, s)
	l.mu.Unlock()
	l.seen <- s
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.list)
}

func TestRunCommandLines(t *testing.T) {
	l := newLines()
	if err := RunCommand(context.Background(), helperCommand("lines"), l.add); err != nil {
		t.Fatal(err)
	}
	want := []string{"first", "  10/100 kB (10%)", "second", "third"}
	if got := l.all(); !slices.Equal(got, want) {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func TestRunCommandExitCode(t *testing.T) {
	l := newLines()
	err := RunCommand(context.Background(), helperCommand("fail"), l.add)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("RunCommand = %v, want exit status 3", err)
	}
	if got := l.all(); !slices.Equal(got, []string{"something broke"}) {
		t.Errorf("lines = %q", got)
	}
}

func TestRunCommandStartFailure(t *testing.T) {
	err := RunCommand(context.Background(), exec.Command("/nonexistent/custos-tool"), nil)
	if err == nil {
		t.Fatal("starting a missing tool succeeded")
	}
}

// runUntilLine starts the helper, waits for its first line, cancels, and
// returns RunCommand's error and how long it took after the cancel.
func runUntilLine(t *testing.T, mode string) (string, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLines()
	result := make(chan error, 1)
	go func() { result <- RunCommand(ctx, helperCommand(mode), l.add) }()
	var first string
	select {
	case first = <-l.seen:
	case err := <-result:
		t.Fatalf("helper %s ended early: %v", mode, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("helper %s printed nothing", mode)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-result:
		return first, time.Since(start), err
	case <-time.After(killGrace + 10*time.Second):
		t.Fatalf("cancelled RunCommand of %s did not return", mode)
	}
	return "", 0, nil
}

func TestRunCommandCancel(t *testing.T) {
	_, took, err := runUntilLine(t, "sleep")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled RunCommand = %v, want context.Canceled", err)
	}
	if took > killGrace {
		t.Errorf("a tool that honours SIGTERM took %s to stop", took)
	}
}

func TestRunCommandCancelEscalatesToKill(t *testing.T) {
	_, took, err := runUntilLine(t, "ignore-term")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled RunCommand = %v, want context.Canceled", err)
	}
	if took < killGrace/2 || took > killGrace+5*time.Second {
		t.Errorf("a tool that ignores SIGTERM stopped after %s, want about %s", took, killGrace)
	}
}
