package servers

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// What the launchers share: finding binaries, picking ports, running a
// server process and waiting until it serves.

const (
	// startAttempts retries a start that lost a port to another process
	// between picking it and the server binding it.
	startAttempts = 3
	// logTail is how much of a server's log a failed start reports.
	logTail = 4000
	// buildWait bounds how long a launcher waits for a build of its
	// server that is in progress (make test starts them in the
	// background): a cold kube-apiserver build took over 10 minutes on two
	// busy cores.
	buildWait = 30 * time.Minute
	// buildPoll is how often a launcher looks whether that build is done.
	buildPoll = 500 * time.Millisecond
)

// errPortTaken marks a start that failed because another process took a
// chosen port first; the launchers then try again with new ports.
var errPortTaken = errors.New("port taken")

// CacheDir is where .ci/build-servers puts what it builds:
// $CUSTOS_CACHE, else ~/.cache/custos.
func CacheDir() string {
	if d := os.Getenv("CUSTOS_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "custos")
}

// cachedBinary is the binary named by the environment variable env, else
// <cache>/bin/<name>. When that is missing while .ci/build-servers is
// building it (it leaves <name>.building with its pid), it waits for the
// build (on Linux, which shows the builder in /proc). A missing binary is an error that says how to build it.
func cachedBinary(env, name string) (string, error) {
	if path := os.Getenv(env); path != "" {
		if !executable(path) {
			return "", fmt.Errorf("%s=%s: not an executable file", env, path)
		}
		return path, nil
	}
	path := filepath.Join(CacheDir(), "bin", name)
	if executable(path) {
		return path, nil
	}
	if err := waitForBuild(path); err != nil {
		return "", err
	}
	if executable(path) {
		return path, nil
	}
	return "", fmt.Errorf("%s not found at %s: run `make servers` (or .ci/build-servers) from the repository root, which builds it from tools/ into the cache (minutes when cold), or set %s",
		name, path, env)
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// waitForBuild waits while a build of path runs (path.building names the
// building process); it returns an error when that build ends without the
// binary.
func waitForBuild(path string) error {
	marker := path + ".building"
	building := func() (pid int, log string, ok bool) {
		data, err := os.ReadFile(marker)
		if err != nil {
			return 0, "", false
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			return 0, "", false
		}
		pid, err = strconv.Atoi(f[0])
		// Not kill(pid, 0): where PID 1 does not reap orphans, a finished
		// build lingers as a zombie, whose command line is empty.
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || len(cmdline) == 0 {
			return 0, "", false
		}
		log = "the output of .ci/build-servers"
		if len(f) > 1 && f[1] != "-" {
			log = f[1]
		}
		return pid, log, true
	}
	pid, log, ok := building()
	if !ok {
		return nil
	}
	fmt.Fprintf(os.Stderr, "servers: waiting for the build of %s in progress (pid %d, log %s)\n", filepath.Base(path), pid, log)
	ctx, cancel := context.WithTimeoutCause(context.Background(), buildWait, fmt.Errorf("the build of %s still runs after %v", filepath.Base(path), buildWait))
	defer cancel()
	for {
		if executable(path) {
			return nil
		}
		if _, _, ok := building(); !ok {
			if executable(path) {
				return nil
			}
			return fmt.Errorf("the build of %s ended without it: see %s", filepath.Base(path), log)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(buildPoll):
		}
	}
}

// TempRoot is where the launchers put a server's data unless told
// otherwise: /dev/shm when it is a writable directory (etcd 3.4 cannot
// turn fsync off, and fsyncs on a busy disk make writes slow enough to
// trip tight test timeouts), else the system's temp directory.
func TempRoot() string {
	const shm = "/dev/shm"
	if fi, err := os.Stat(shm); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp(shm, "custos-probe-"); err == nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return shm
		}
	}
	return os.TempDir()
}

// workspace is the directory of a server's files; one the launcher made
// for it goes when the server is stopped.
type workspace struct {
	dir   string
	owned bool
}

func (w workspace) remove() {
	if w.owned {
		_ = os.RemoveAll(w.dir)
	}
}

// launch starts a server with start in a fresh subdirectory of dir (of a
// new directory under TempRoot when dir is empty) for each attempt, until
// it succeeds or fails for another reason than a lost port.
func launch[S any](what, dir string, start func(dir string) (S, error)) (S, workspace, error) {
	var zero S
	ws := workspace{dir: dir}
	if dir == "" {
		var err error
		if ws.dir, err = os.MkdirTemp(TempRoot(), "custos-"+what+"-"); err != nil {
			return zero, ws, err
		}
		ws.owned = true
	}
	var errs []error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		adir := filepath.Join(ws.dir, "attempt-"+strconv.Itoa(attempt))
		if err := os.MkdirAll(adir, 0o700); err != nil {
			errs = append(errs, err)
			break
		}
		s, err := start(adir)
		if err == nil {
			return s, ws, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	ws.remove()
	return zero, ws, fmt.Errorf("starting %s: %w", what, errors.Join(errs...))
}

var portsTaken struct {
	sync.Mutex
	m map[int]bool
}

// FreePorts returns n loopback ports that were free a moment ago, none
// handed out before by this process to a server or a cluster (all n
// listeners stay open until it returns, so they differ).
func FreePorts(n int) ([]int, error) {
	portsTaken.Lock()
	defer portsTaken.Unlock()
	if portsTaken.m == nil {
		portsTaken.m = map[int]bool{}
	}
	var out []int
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		defer l.Close()
		if p := l.Addr().(*net.TCPAddr).Port; !portsTaken.m[p] {
			portsTaken.m[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// process is a server process a launcher runs. It can be killed, frozen,
// thawed and started again with the same arguments; its output goes to a
// log file that grows across runs.
type process struct {
	name    string
	bin     string
	args    []string
	dir     string // working directory, empty for the caller's
	logPath string
	// group: the server runs in its own process group, and kill signals
	// the whole group (a JVM's helpers die with it).
	group bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts the process; it dies with the test binary even when the
// test's clean-up does not run.
func (p *process) start() error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: p.group}
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

func (p *process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// running reports whether the process was started and has not exited.
func (p *process) running() bool {
	_, done := p.current()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process, as a crash or a lost machine stops it, and
// waits until it is gone. Killing a stopped process does nothing.
func (p *process) kill() {
	cmd, done := p.current()
	if cmd == nil {
		return
	}
	if p.group {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	} else {
		_ = cmd.Process.Kill()
	}
	<-done
}

// signal sends sig to a running process.
func (p *process) signal(sig syscall.Signal, what string) error {
	if !p.running() {
		return fmt.Errorf("%s %s: it is not running", what, p.name)
	}
	cmd, _ := p.current()
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s %s: %w", what, p.name, err)
	}
	if sig == syscall.SIGSTOP {
		// The signal is sent, not yet taken: a thread busy on another CPU
		// stops a moment later. Frozen means every thread stopped.
		return waitStopped(cmd.Process.Pid, 5*time.Second)
	}
	return nil
}

// waitStopped waits until every thread of pid is stopped (state T in
// /proc), or fails after timeout.
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if allStopped(pid) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped %v after SIGSTOP", pid, timeout)
		}
		time.Sleep(5 * time.Millisecond) // the kernel stops the threads within milliseconds
	}
}

// allStopped reports whether every thread of pid is in state T ("stopped");
// true where /proc is not available to say otherwise.
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue
		}
		// The state follows the parenthesized command name.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) {
			continue
		}
		if st := stat[i+2]; st != 'T' && st != 't' {
			return false
		}
	}
	return true
}

// log returns what the process wrote so far.
func (p *process) log() []byte {
	out, _ := os.ReadFile(p.logPath)
	return out
}

// waitReady polls ready until it succeeds, the process exits or timeout
// passes; a failure kills the process and says why with the tail of its
// log, wrapping errPortTaken when a port was lost.
func (p *process) waitReady(timeout time.Duration, ready func(context.Context) error) error {
	cmd, done := p.current()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("not ready after %v", timeout))
	defer cancelTimeout()
	go func() {
		select {
		case <-done:
			cancel(fmt.Errorf("exited during start-up: %v", cmd.ProcessState))
		case <-ctx.Done():
		}
	}()
	err := poll.Until(ctx, ready)
	if err == nil {
		return nil
	}
	p.kill()
	out := p.log()
	if bytes.Contains(bytes.ToLower(out), []byte("address already in use")) {
		return fmt.Errorf("%s: %w: %v", p.name, errPortTaken, err)
	}
	return fmt.Errorf("%s: %v; its log:\n%s", p.name, err, lastBytes(out, logTail))
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// httpGet returns the body of a 200 answer to GET url, with a bearer token
// when one is given.
func httpGet(ctx context.Context, client *http.Client, url, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, lastBytes(body, 500))
	}
	return body, nil
}

// newHTTPClient returns a client with a transport of its own (TLS settled
// by tlsCfg) and the function that closes its idle connections, so that no
// keep-alive goroutine outlives the caller.
func newHTTPClient(tlsCfg *tls.Config) (*http.Client, func()) {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
}
