package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvEtcdBin overrides the etcd binary StartEtcd runs.
const EnvEtcdBin = "CUSTOS_ETCD_BIN"

const (
	// etcdStartTimeout bounds one start: a single member elects itself
	// within one election timeout once it is up, far below this.
	etcdStartTimeout = 30 * time.Second
	// etcdStartAttempts retries a start that lost its port to another
	// process between picking it and etcd binding it.
	etcdStartAttempts = 3
	// etcdHeartbeatMS and etcdElectionMS are shorter than etcd's defaults so
	// the member elects itself at once; loopback has no latency to allow for.
	etcdHeartbeatMS = 50
	etcdElectionMS  = 500
)

// Etcd is a throwaway single-member etcd server in its own process.
type Etcd struct {
	// Endpoint is the client address, "127.0.0.1:<port>".
	Endpoint string
	bin      string
	args     []string
	logPath  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartEtcd starts an etcd server (the binary from $CUSTOS_ETCD_BIN or PATH,
// the Debian package etcd-server) on loopback ports picked now, with its data
// in a directory removed at the end of the test, and waits until it serves
// requests. The server is killed in t.Cleanup. A missing binary fails the
// test with what to install.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin := os.Getenv(EnvEtcdBin)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("etcd"); err != nil {
			t.Fatalf("etcd not found on PATH: install the Debian package etcd-server (apt-get install etcd-server) or set %s to an etcd binary", EnvEtcdBin)
		}
	}
	// etcd 3.4 cannot turn fsync off; in memory its writes stay fast on a
	// busy disk.
	dir, err := os.MkdirTemp(fastTempRoot(), "custos-etcd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var errs []error
	for attempt := 1; attempt <= etcdStartAttempts; attempt++ {
		e, err := startEtcd(bin, filepath.Join(dir, "attempt-"+strconv.Itoa(attempt)))
		if err == nil {
			t.Cleanup(e.Kill)
			return e
		}
		errs = append(errs, err)
		if !errors.Is(err, errEtcdPortTaken) {
			break
		}
	}
	t.Fatalf("starting etcd: %v", errors.Join(errs...))
	return nil
}

var errEtcdPortTaken = errors.New("port taken")

func startEtcd(bin, dir string) (*Etcd, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	e := &Etcd{
		Endpoint: "127.0.0.1:" + strconv.Itoa(ports[0]),
		bin:      bin,
		args: []string{
			"--name", "custos-test",
			"--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", client,
			"--advertise-client-urls", client,
			"--listen-peer-urls", peer,
			"--initial-advertise-peer-urls", peer,
			"--initial-cluster", "custos-test=" + peer,
			"--initial-cluster-state", "new",
			"--heartbeat-interval", strconv.Itoa(etcdHeartbeatMS),
			"--election-timeout", strconv.Itoa(etcdElectionMS),
			"--logger", "zap",
			"--log-outputs", "stderr",
			"--log-level", "warn",
		},
		logPath: filepath.Join(dir, "etcd.log"),
	}
	if err := e.launch(); err != nil {
		return nil, err
	}
	return e, nil
}

// launch starts the server process and waits until it is healthy; its log
// is appended to across runs.
func (e *Etcd) launch() error {
	logFile, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(e.bin, e.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	// etcd dies with the test binary even when its clean-up does not run.
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", e.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	e.mu.Lock()
	e.cmd, e.done = cmd, done
	e.mu.Unlock()
	if err := e.waitHealthy(cmd, done); err != nil {
		e.Kill()
		out, _ := os.ReadFile(e.logPath)
		if bytes.Contains(out, []byte("address already in use")) {
			return fmt.Errorf("%w: %v", errEtcdPortTaken, err)
		}
		return fmt.Errorf("%v; etcd log:\n%s", err, lastBytes(out, 4000))
	}
	return nil
}

// Kill SIGKILLs the server, as a crash or a lost machine stops it, and
// waits until it is gone. Killing a stopped server does nothing.
func (e *Etcd) Kill() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Freeze stops the server with SIGSTOP, as a hung process or a paused
// machine stops: its connections stay open and nothing answers. Thaw
// resumes it.
func (e *Etcd) Freeze() error { return e.signal(syscall.SIGSTOP, "freezing") }

// Thaw resumes a frozen server with SIGCONT. Thawing a running server does
// nothing.
func (e *Etcd) Thaw() error { return e.signal(syscall.SIGCONT, "thawing") }

func (e *Etcd) signal(sig syscall.Signal, what string) error {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.mu.Unlock()
	select {
	case <-done:
		return fmt.Errorf("%s etcd: it is not running", what)
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s etcd: %w", what, err)
	}
	return nil
}

// Restart starts a killed server again on the same ports with the same
// data, and waits until it serves requests.
func (e *Etcd) Restart() error {
	e.mu.Lock()
	done := e.done
	e.mu.Unlock()
	select {
	case <-done:
	default:
		return errors.New("restarting etcd: it is still running")
	}
	return e.launch()
}

func (e *Etcd) waitHealthy(cmd *exec.Cmd, done chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), etcdStartTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-done:
			return fmt.Errorf("etcd exited during start-up: %v", cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("etcd not healthy after %v: %v", etcdStartTimeout, last)
		case <-time.After(50 * time.Millisecond): // polling interval
		}
		if last = e.healthy(ctx); last == nil {
			return nil
		}
	}
}

func (e *Etcd) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Endpoint+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"health":"true"`)) {
		return fmt.Errorf("health %d %s", resp.StatusCode, body)
	}
	return nil
}

// Log returns what etcd logged so far.
func (e *Etcd) Log() string {
	out, _ := os.ReadFile(e.logPath)
	return string(out)
}

// fastTempRoot is /dev/shm when it is a writable directory, else the
// system's temp directory.
func fastTempRoot() string {
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

// freePorts picks n distinct loopback ports nothing listens on right now
// (all n listeners stay open until it returns, so the ports differ).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
