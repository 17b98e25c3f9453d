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
	cmd      *exec.Cmd
	done     chan struct{}
	logPath  string
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
			t.Cleanup(e.stop)
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
	logPath := filepath.Join(dir, "etcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin,
		"--name", "custos-test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "custos-test="+peer,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", strconv.Itoa(etcdHeartbeatMS),
		"--election-timeout", strconv.Itoa(etcdElectionMS),
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	// etcd dies with the test binary even when its clean-up does not run.
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	e := &Etcd{Endpoint: "127.0.0.1:" + strconv.Itoa(ports[0]), cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		close(e.done)
	}()
	if err := e.waitHealthy(); err != nil {
		e.stop()
		out, _ := os.ReadFile(logPath)
		if bytes.Contains(out, []byte("address already in use")) {
			return nil, fmt.Errorf("%w: %v", errEtcdPortTaken, err)
		}
		return nil, fmt.Errorf("%v; etcd log:\n%s", err, lastBytes(out, 4000))
	}
	return e, nil
}

func (e *Etcd) waitHealthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), etcdStartTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-e.done:
			return fmt.Errorf("etcd exited during start-up: %v", e.cmd.ProcessState)
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

func (e *Etcd) stop() {
	_ = e.cmd.Process.Kill()
	<-e.done
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
