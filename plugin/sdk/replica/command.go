package replica

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// Timings of RunCommand.
const (
	// killGrace is how long a cancelled tool gets between SIGTERM and
	// SIGKILL: enough to close its connections, short enough that a
	// cancelled copy returns promptly.
	killGrace = 3 * time.Second
	// outputGrace is how long the output may stay open after the tool
	// exited before its leftover children are killed: a tool's helpers
	// (pg_basebackup's WAL streamer) exit right after it.
	outputGrace = time.Second
	// maxLineBytes caps one line of tool output.
	maxLineBytes = 64 * 1024
)

// RunCommand runs an external tool for a copy the way the contract needs:
// in a process group of its own (and, on Linux, killed if the plugin
// process dies), with stdout and stderr merged and handed to line one line
// at a time (a carriage return ends a line too, for progress meters). When
// ctx is cancelled the whole group gets SIGTERM, then SIGKILL after a grace
// period, and RunCommand returns an error matching ctx.Err() once the tool
// is reaped (nil if the tool had already exited successfully). A non-zero
// exit is an *exec.ExitError. cmd must not have been started and its
// Stdout and Stderr must be nil.
func RunCommand(ctx context.Context, cmd *exec.Cmd, line func(string)) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("running %s: %w", cmd.Path, err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	_ = w.Close()

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		scanLines(r, line)
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	var (
		waitErr   error
		cancelled bool
	)
	select {
	case waitErr = <-waitDone:
	case <-ctx.Done():
		cancelled = true
		signalGroup(cmd, false)
		timer := time.NewTimer(killGrace)
		select {
		case waitErr = <-waitDone:
		case <-timer.C:
			signalGroup(cmd, true)
			waitErr = <-waitDone
		}
		timer.Stop()
	}

	// The pipe stays open while any process of the group holds it. Such
	// leftovers keep the group alive, so killing the group cannot hit an
	// unrelated process that reused the id.
	select {
	case <-readDone:
	case <-time.After(outputGrace):
		signalGroup(cmd, true)
		select {
		case <-readDone:
		case <-time.After(outputGrace):
			_ = r.Close()
			<-readDone
		}
	}
	_ = r.Close()

	if cancelled {
		return fmt.Errorf("%s stopped: %w", cmd.Path, ctx.Err())
	}
	if waitErr != nil {
		return fmt.Errorf("%s: %w", cmd.Path, waitErr)
	}
	return nil
}

// scanLines calls line for every non-empty line read from r.
func scanLines(r *os.File, line func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	sc.Split(splitLines)
	for sc.Scan() {
		if s := string(bytes.TrimRight(sc.Bytes(), " \t")); s != "" && line != nil {
			line(s)
		}
	}
	// Drain what is left after an over-long line so the tool never blocks
	// on a full pipe.
	if sc.Err() != nil {
		_, _ = bufio.NewReader(r).WriteTo(discard{})
	}
}

// splitLines is bufio.ScanLines that also ends a line at '\r'.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
