package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ConsulVersion is the Consul release the tests run: the one
// tools/consul/go.mod requires and .ci/build-consul builds.
const ConsulVersion = "1.22.5"

// EnvConsulBin overrides the Consul binary StartConsul runs.
const EnvConsulBin = "CUSTOS_CONSUL_BIN"

const (
	// consulStartTimeout bounds one start: a dev agent elects itself within
	// half a second once it is up, far below this.
	consulStartTimeout = 30 * time.Second
	// consulStartAttempts retries a start that lost a port to another
	// process between picking it and Consul binding it.
	consulStartAttempts = 3
)

// Consul is a throwaway Consul agent in dev mode (one server, state in
// memory) in its own process.
type Consul struct {
	// Address is the HTTP API's "127.0.0.1:<port>".
	Address string
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

// URL is the HTTP API's "http://127.0.0.1:<port>".
func (c *Consul) URL() string { return "http://" + c.Address }

// StartConsul starts a Consul dev agent (the binary from $CUSTOS_CONSUL_BIN,
// else the cache .ci/build-consul fills) on loopback ports picked now and
// waits until it has elected itself leader. It is killed in t.Cleanup. A
// missing binary fails the test with how to build it.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	bin := serverBinary(t, EnvConsulBin, "consul-"+ConsulVersion, ".ci/build-consul")
	dir, err := os.MkdirTemp(fastTempRoot(), "custos-consul-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var errs []error
	for attempt := 1; attempt <= consulStartAttempts; attempt++ {
		c, err := startConsul(bin, filepath.Join(dir, "attempt-"+strconv.Itoa(attempt)))
		if err == nil {
			t.Cleanup(c.stop)
			return c
		}
		errs = append(errs, err)
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("starting consul: %v", errors.Join(errs...))
	return nil
}

func startConsul(bin, dir string) (*Consul, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "consul.log")
	p, err := startProcess(bin, logPath, "agent", "-dev",
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
	if err != nil {
		return nil, err
	}
	c := &Consul{Address: "127.0.0.1:" + strconv.Itoa(ports[0]), cmd: p.cmd, done: p.done, logPath: logPath}
	client, closeClient := newHTTPClient(nil)
	defer closeClient()
	err = waitReady(p, consulStartTimeout, func(ctx context.Context) error {
		// Ready once /v1/status/leader names a leader.
		body, err := httpGet(ctx, client, c.URL()+"/v1/status/leader", "")
		var leader string
		if err == nil && (json.Unmarshal(body, &leader) != nil || leader == "") {
			err = fmt.Errorf("no leader yet: %s", body)
		}
		return err
	})
	if err != nil {
		c.stop()
		return nil, p.failure("consul", err)
	}
	return c, nil
}

func (c *Consul) stop() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Log returns what Consul logged so far.
func (c *Consul) Log() string {
	out, _ := os.ReadFile(c.logPath)
	return string(out)
}
