package etcdtest

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
	"strings"
	"time"
)

// BinEnv overrides the etcd binary.
const BinEnv = "CUSTOS_ETCD_BIN"

const (
	// startTimeout bounds one start: a single member elects itself within
	// one election timeout once it is up, far below this.
	startTimeout = 30 * time.Second
	// startAttempts retries a start that lost its port to another process
	// between picking it and etcd binding it.
	startAttempts = 3
	// heartbeat and election timeout (ms) shorter than etcd's defaults so the
	// member elects itself at once; loopback has no latency to allow for.
	heartbeatMS = 50
	electionMS  = 500
)

// Server is a running etcd.
type Server struct {
	// Endpoint is the client address, "127.0.0.1:<port>".
	Endpoint string
	bin      string
	args     []string
	cmd      *exec.Cmd
	done     chan struct{}
	logPath  string
}

// ClientURL is the client URL, "http://127.0.0.1:<port>".
func (s *Server) ClientURL() string { return "http://" + s.Endpoint }

// Start starts etcd with its data and log under dir and waits until it
// serves requests. A missing binary is an error that says what to install.
func Start(dir string) (*Server, error) {
	bin := os.Getenv(BinEnv)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("etcd"); err != nil {
			return nil, fmt.Errorf("etcd not found on PATH: install the Debian package etcd-server (apt-get install etcd-server) or set %s to an etcd binary", BinEnv)
		}
	}
	var errs []error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		s, err := start(bin, filepath.Join(dir, "attempt-"+strconv.Itoa(attempt)))
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

var errPortTaken = errors.New("port taken")

func start(bin, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	args := []string{
		"--name", "custos-test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "custos-test=" + peer,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", strconv.Itoa(heartbeatMS),
		"--election-timeout", strconv.Itoa(electionMS),
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	}
	s := &Server{Endpoint: strings.TrimPrefix(client, "http://"), bin: bin, args: args, logPath: filepath.Join(dir, "etcd.log")}
	if err := s.run(); err != nil {
		return nil, err
	}
	return s, nil
}

// run starts the process and waits until it serves requests.
func (s *Server) run() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := s.waitHealthy(); err != nil {
		s.Stop()
		out, _ := os.ReadFile(s.logPath)
		if bytes.Contains(out, []byte("address already in use")) {
			return fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return fmt.Errorf("%v; etcd log:\n%s", err, tail(out, 4000))
	}
	return nil
}

// Restart kills etcd and starts it again on the same ports and data: the
// keys and leases stay, every client connection and watch breaks.
func (s *Server) Restart() error {
	s.Stop()
	return s.run()
}

func (s *Server) waitHealthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("etcd exited during start-up: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("etcd not healthy after %v: %v", startTimeout, last)
		case <-time.After(50 * time.Millisecond): // polling interval
		}
		last = s.healthy(ctx)
		if last == nil {
			return nil
		}
	}
}

func (s *Server) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ClientURL()+"/health", nil)
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

// Stop kills etcd and waits for it to exit.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Log returns what etcd wrote so far.
func (s *Server) Log() string {
	out, _ := os.ReadFile(s.logPath)
	return string(out)
}

// TempRoot is where to put etcd's data: /dev/shm when it is a writable
// directory, since etcd 3.4 has no --unsafe-no-fsync and fsyncs on a busy
// disk make writes slow enough to trip tight test timeouts; else the
// system's temp directory.
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

// freePorts picks n distinct loopback ports nothing listens on right now
// (all n listeners stay open until it returns, so the ports differ).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
