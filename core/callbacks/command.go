package callbacks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/kballard/go-shellquote"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

const (
	// tailLines is how many of the last output lines a Result keeps: enough
	// for a script's error message and what led to it.
	tailLines = 20
	// tailLineBytes caps each kept line, so that a script printing one
	// huge line does not make a huge error.
	tailLineBytes = 512
)

// Split splits a command line into words as a POSIX shell would (quotes
// and backslashes; no variables, globs or comments), the way Patroni splits
// its callback and hook commands. A line without a word is an error.
func Split(line string) ([]string, error) {
	words, err := shellquote.Split(line)
	if err != nil {
		return nil, fmt.Errorf("splitting command %q: %w", line, err)
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("command %q names no program", line)
	}
	return words, nil
}

// Command is one run of an external command.
type Command struct {
	// Name says what the command is for in errors and logs ("pre_promote",
	// "on_start").
	Name string
	// Argv is the program and its arguments; the program is looked up in
	// PATH when it has no slash.
	Argv []string
	// Env is added to the agent's environment (KEY=VALUE; a key given here
	// wins).
	Env []string
	// Timeout bounds the run; 0 leaves it to ctx.
	Timeout time.Duration
	// Output, when set, gets each line the command prints (stdout and
	// stderr merged).
	Output func(line string)
}

// Result is how a command ended.
type Result struct {
	// ExitCode is the command's exit status; -1 when it did not exit by
	// itself (killed by a signal, or never started).
	ExitCode int
	// Tail is the last lines the command printed, newline-separated.
	Tail string
	// Duration is how long it ran.
	Duration time.Duration
}

// ExitError reports a command that ended with a non-zero status or was
// killed by a signal other than the timeout's.
type ExitError struct {
	Name string
	// Program is the command's first word.
	Program string
	// ExitCode is the exit status, -1 for a signal.
	ExitCode int
	// State describes the end ("exit status 3", "signal: segmentation fault").
	State string
	// Tail is the last lines of output.
	Tail string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: %s ended with %s", e.Name, e.Program, e.State)
	if e.Tail != "" {
		msg += fmt.Sprintf("; output: %q", e.Tail)
	}
	return msg
}

// Run runs the command in a process group of its own, with the agent's
// environment plus cmd.Env; with ctx already ended it starts nothing. When
// ctx ends or the timeout passes, the whole
// group gets SIGTERM, then SIGKILL a few seconds later, and Run returns an
// error matching context.DeadlineExceeded (timeout) or ctx.Err() once the
// command is reaped. Children still holding its output a moment after it
// exited are killed too. A non-zero exit is an *ExitError. Every error
// carries the tail of the output.
func Run(ctx context.Context, cmd Command) (Result, error) {
	res := Result{ExitCode: -1}
	if len(cmd.Argv) == 0 {
		return res, fmt.Errorf("%s: no command to run", cmd.Name)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("%s: %s not started: %w", cmd.Name, cmd.Argv[0], err)
	}
	runCtx := ctx
	if cmd.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cmd.Timeout)
		defer cancel()
	}
	c := exec.Command(cmd.Argv[0], cmd.Argv[1:]...)
	if len(cmd.Env) > 0 {
		c.Env = append(os.Environ(), cmd.Env...)
	}
	var tail tailBuffer
	start := time.Now()
	err := replica.RunCommand(runCtx, c, func(line string) {
		tail.add(line)
		if cmd.Output != nil {
			cmd.Output(line)
		}
	})
	res.Duration = time.Since(start)
	res.Tail = tail.String()
	if c.ProcessState != nil {
		res.ExitCode = c.ProcessState.ExitCode()
	}
	program := cmd.Argv[0]
	if err == nil {
		return res, nil
	}
	// RunCommand's error matches the context's when it stopped the
	// command; which context ended tells a timeout from the caller.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ctx.Err() != nil {
			return res, fmt.Errorf("%s: %s stopped before it finished: %w%s", cmd.Name, program, ctx.Err(), tailSuffix(res.Tail))
		}
		return res, fmt.Errorf("%s: %s did not finish within %v and was killed: %w%s", cmd.Name, program, cmd.Timeout, context.DeadlineExceeded, tailSuffix(res.Tail))
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return res, &ExitError{Name: cmd.Name, Program: program, ExitCode: exitErr.ExitCode(), State: exitErr.ProcessState.String(), Tail: res.Tail}
	}
	return res, fmt.Errorf("%s: %w%s", cmd.Name, err, tailSuffix(res.Tail))
}

func tailSuffix(tail string) string {
	if tail == "" {
		return ""
	}
	return fmt.Sprintf("; output: %q", tail)
}

// tailBuffer keeps the last tailLines lines.
type tailBuffer struct {
	lines []string
}

func (t *tailBuffer) add(line string) {
	if len(line) > tailLineBytes {
		line = line[:tailLineBytes] + "..."
	}
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, line)
}

func (t *tailBuffer) String() string { return strings.Join(t.lines, "\n") }
