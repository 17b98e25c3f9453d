package servers

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// EnvConsulBin names the Consul binary StartConsul runs instead of the
// cache's.
const EnvConsulBin = "CUSTOS_CONSUL_BIN"

// consulStartTimeout bounds one start: a dev agent elects itself within
// half a second once it is up, far below this.
const consulStartTimeout = 30 * time.Second

// ConsulConfig says how to run a Consul agent.
type ConsulConfig struct {
	// Bin is the consul binary: empty for $CUSTOS_CONSUL_BIN, else the
	// cache's consul-<ConsulVersion>, waiting for a build of it in
	// progress.
	Bin string
	// Dir holds the data and the log; empty for a new directory under
	// TempRoot that Stop removes.
	Dir string
}

// Consul is a throwaway Consul agent in dev mode (one server, state in
// memory) in its own process.
type Consul struct {
	// Address is the HTTP API's "127.0.0.1:<port>".
	Address string
	proc    *process
	ws      workspace
}

// URL is the HTTP API's "http://127.0.0.1:<port>".
func (c *Consul) URL() string { return "http://" + c.Address }

// ConsulBinary is $CUSTOS_CONSUL_BIN, else the cache's
// consul-<ConsulVersion>, waiting for a build of it in progress.
func ConsulBinary() (string, error) {
	return cachedBinary(EnvConsulBin, "consul-"+ConsulVersion)
}

// StartConsul starts a Consul dev agent on loopback ports picked now and
// waits until it has elected itself leader. A missing binary is an error
// that says how to build it. Stop it with Stop.
func StartConsul(cfg ConsulConfig) (*Consul, error) {
	if cfg.Bin == "" {
		var err error
		if cfg.Bin, err = ConsulBinary(); err != nil {
			return nil, err
		}
	}
	c, ws, err := launch("consul", cfg.Dir, func(dir string) (*Consul, error) { return startConsul(cfg.Bin, dir) })
	if err != nil {
		return nil, err
	}
	c.ws = ws
	return c, nil
}

func startConsul(bin, dir string) (*Consul, error) {
	ports, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	c := &Consul{
		Address: "127.0.0.1:" + strconv.Itoa(ports[0]),
		proc: &process{name: "consul", bin: bin, logPath: filepath.Join(dir, "consul.log"), args: []string{
			"agent", "-dev",
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
		}},
	}
	if err := c.proc.start(); err != nil {
		return nil, err
	}
	client, closeClient := newHTTPClient(nil)
	defer closeClient()
	err = c.proc.waitReady(consulStartTimeout, func(ctx context.Context) error {
		// Ready once /v1/status/leader names a leader.
		body, err := httpGet(ctx, client, c.URL()+"/v1/status/leader", "")
		var leader string
		if err == nil && (json.Unmarshal(body, &leader) != nil || leader == "") {
			err = fmt.Errorf("no leader yet: %s", body)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Stop kills the agent and removes the directory StartConsul made for it.
func (c *Consul) Stop() {
	c.proc.kill()
	c.ws.remove()
}

// Log returns what Consul logged so far.
func (c *Consul) Log() string { return string(c.proc.log()) }
