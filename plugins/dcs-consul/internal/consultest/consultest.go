package consultest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Version is the Consul release the tests run, the one tools/consul builds.
const Version = "1.22.5"

// BinEnv overrides the Consul binary.
const BinEnv = "CUSTOS_CONSUL_BIN"

const (
	// startTimeout bounds one start: a dev agent elects itself within half
	// a second once it is up, far below this.
	startTimeout = 30 * time.Second
	// startAttempts retries a start that lost a port to another process
	// between picking it and Consul binding it.
	startAttempts = 3
)

// Server is a running Consul agent.
type Server struct {
	// Address is the HTTP API's "127.0.0.1:<port>".
	Address string
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

// URL is the HTTP API's "http://127.0.0.1:<port>".
func (s *Server) URL() string { return "http://" + s.Address }

// Bin returns the Consul binary: CUSTOS_CONSUL_BIN, else
// ${CUSTOS_CACHE:-$HOME/.cache/custos}/bin/consul-<Version>. A missing
// binary is an error that says how to build it.
func Bin() (string, error) {
	if bin := os.Getenv(BinEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %v", BinEnv, bin, err)
		}
		return bin, nil
	}
	cache := os.Getenv("CUSTOS_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the Consul binary: %v", err)
		}
		cache = filepath.Join(home, ".cache", "custos")
	}
	bin := filepath.Join(cache, "bin", "consul-"+Version)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("consul %s not found at %s: run .ci/build-consul from the repository root (it builds Consul from its Go module, several minutes cold) or set %s to a consul binary",
			Version, bin, BinEnv)
	}
	return bin, nil
}

// Start starts a dev agent with its data and log under dir and waits until
// it has elected itself leader.
func Start(dir string) (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
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
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "consul.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "agent", "-dev",
		"-node", "custos-test",
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-data-dir", filepath.Join(dir, "data"),
		"-http-port", strconv.Itoa(ports[0]),
		"-serf-lan-port", strconv.Itoa(ports[1]),
		"-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]),
		"-dns-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-log-level", "warn",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &Server{Address: "127.0.0.1:" + strconv.Itoa(ports[0]), cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitLeader(); err != nil {
		s.Stop()
		out, _ := os.ReadFile(logPath)
		if bytes.Contains(out, []byte("address already in use")) {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, fmt.Errorf("%v; consul log:\n%s", err, tail(out, 4000))
	}
	return s, nil
}

func (s *Server) waitLeader() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("consul exited during start-up: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("consul has no leader after %v: %v", startTimeout, last)
		case <-time.After(50 * time.Millisecond): // polling interval
		}
		last = s.leader(ctx)
		if last == nil {
			return nil
		}
	}
}

// leader succeeds once /v1/status/leader names a leader.
func (s *Server) leader(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v1/status/leader", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var leader string
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &leader) != nil || leader == "" {
		return fmt.Errorf("status/leader %d %s", resp.StatusCode, body)
	}
	return nil
}

// Stop kills Consul and waits for it to exit.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Log returns what Consul wrote so far.
func (s *Server) Log() string {
	out, _ := os.ReadFile(s.logPath)
	return string(out)
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
