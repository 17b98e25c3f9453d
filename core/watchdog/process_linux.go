//go:build linux

package watchdog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// process is the agent's side of the process driver: it starts the
// fencing process and talks to it. A fencing process that does not answer
// in time, or answers nonsense, is killed at once: one in an unknown state
// could be counting down with nobody feeding it. The next usable or arm
// starts a new one.
type process struct {
	exe    string
	stderr io.Writer
	logger hclog.Logger

	cmd     *exec.Cmd
	in      *os.File // its stdin, our end
	out     *os.File // its stdout, our end
	rd      *bufio.Reader
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error         // cmd.Wait's result, read after exited
	isArmed bool
}

func newProcess(exe string, stderr io.Writer, logger hclog.Logger) driver {
	return &process{exe: exe, stderr: stderr, logger: logger}
}

func (p *process) describe() string { return "fencing process" }

func (p *process) usable() error {
	if p.alive() == nil {
		return nil
	}
	return p.restart()
}

func (p *process) arm(timeout time.Duration, target Target) (time.Duration, error) {
	if target.Pid <= 1 {
		return 0, fmt.Errorf("no postmaster to fence (pid %d)", target.Pid)
	}
	if p.alive() != nil {
		if err := p.restart(); err != nil {
			return 0, err
		}
	}
	p.isArmed = false // a refused arm disarms it
	if err := p.command(fmt.Sprintf("%s %d %d %d", fenceArm, timeout.Milliseconds(), target.Pid, target.StartTime)); err != nil {
		return 0, err
	}
	p.isArmed = true
	return timeout, nil
}

func (p *process) feed() error {
	if !p.isArmed {
		// A fencing process started anew is not armed: feeding it would
		// fence nothing.
		return errors.New("the fencing process is not armed")
	}
	return p.command(fenceFeed)
}

func (p *process) disarm() error {
	err := p.command(fenceDisarm)
	p.isArmed = false
	return err
}

func (p *process) armed() bool { return p.isArmed && p.alive() == nil }

// close disarms and ends the fencing process: at the end of its input it
// exits when disarmed. One that does not is killed.
func (p *process) close() error {
	if p.cmd == nil {
		return nil
	}
	var err error
	if p.alive() == nil && p.isArmed {
		err = p.disarm()
	}
	p.in.Close()
	select {
	case <-p.exited:
	case <-time.After(fenceExitTimeout):
		err = errors.Join(err, errors.New("the fencing process did not exit at the end of its input: killed"))
	}
	p.stop()
	return err
}

// restart replaces a dead or untrusted fencing process with a new one.
func (p *process) restart() error {
	if p.cmd != nil {
		if err := p.alive(); p.isArmed {
			p.logger.Error("the fencing process was lost while armed", "error", err)
		}
		p.stop()
	}
	return p.start()
}

func (p *process) start() error {
	exe := p.exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("finding the custos binary for the fencing process: %w", err)
		}
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting the fencing process: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return fmt.Errorf("starting the fencing process: %w", err)
	}
	cmd := exec.Command(exe, FenceArg)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, p.stderr
	// A session of its own, so that a signal to the agent's process group
	// (SIGKILL of the group, SIGSTOP from a terminal) does not reach it;
	// no Pdeathsig, so that it outlives the agent it fences. Not through
	// reaper.Prepare, which would undo Setsid: the reaper leaves this
	// child alone because os/exec holds a pidfd for it until Wait returns
	// (without pidfds the reaper may reap it first; Wait then fails with
	// ECHILD and the fencing process counts as exited all the same).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return fmt.Errorf("starting the fencing process %s: %w", exe, err)
	}
	p.cmd, p.in, p.out, p.rd, p.isArmed = cmd, inW, outR, bufio.NewReader(outR), false
	p.exited = make(chan struct{})
	exited := p.exited
	go func() {
		p.waitErr = cmd.Wait()
		close(exited)
	}()
	line, err := p.readLine(fenceStartTimeout)
	if err == nil && line != fenceReady {
		err = fmt.Errorf("it said %q instead of %q", line, fenceReady)
	}
	if err != nil {
		p.stop()
		return fmt.Errorf("starting the fencing process %s: %w", exe, err)
	}
	p.logger.Debug("fencing process started", "fencer_pid", cmd.Process.Pid)
	return nil
}

// alive returns nil when the fencing process runs and can be trusted.
func (p *process) alive() error {
	if p.cmd == nil {
		return errors.New("the fencing process is not running")
	}
	select {
	case <-p.exited:
		return fmt.Errorf("the fencing process exited (%v)", p.waitErr)
	default:
		return nil
	}
}

// command sends one line and reads the answer, each within
// fenceAnswerTimeout. An error answer is returned as such; anything else
// that goes wrong kills the fencing process.
func (p *process) command(line string) error {
	if err := p.alive(); err != nil {
		return err
	}
	if err := p.in.SetWriteDeadline(time.Now().Add(fenceAnswerTimeout)); err != nil {
		return p.broken(fmt.Errorf("writing to the fencing process: %w", err))
	}
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		return p.broken(fmt.Errorf("writing to the fencing process: %w", err))
	}
	answer, err := p.readLine(fenceAnswerTimeout)
	switch {
	case err != nil:
		return p.broken(err)
	case answer == fenceOK:
		return nil
	case strings.HasPrefix(answer, fenceError+" "):
		return fmt.Errorf("the fencing process refused %q: %s", strings.Fields(line)[0], strings.TrimPrefix(answer, fenceError+" "))
	}
	return p.broken(fmt.Errorf("the fencing process answered %q to %q", answer, line))
}

func (p *process) readLine(timeout time.Duration) (string, error) {
	if err := p.out.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", fmt.Errorf("reading from the fencing process: %w", err)
	}
	line, err := p.rd.ReadString('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", fmt.Errorf("the fencing process did not answer within %v", timeout)
	}
	if errors.Is(err, io.EOF) {
		// It closed its stdout: it is exiting; say how, if it is quick.
		select {
		case <-p.exited:
			return "", fmt.Errorf("the fencing process exited (%v)", p.waitErr)
		case <-time.After(fenceAnswerTimeout):
			return "", errors.New("the fencing process closed its output")
		}
	}
	if err != nil {
		return "", fmt.Errorf("reading from the fencing process: %w", err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// broken kills a fencing process that cannot be trusted and returns err.
func (p *process) broken(err error) error {
	p.stop()
	return err
}

// stop kills the fencing process if it still runs and waits for it.
func (p *process) stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.in.Close()
	p.out.Close()
	p.cmd, p.isArmed = nil, false
}
