package servers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Environment variables that name the etcd binaries instead of PATH and the
// cache.
const (
	// EnvEtcdBin names the etcd StartEtcd runs by default (else etcd on
	// PATH: Debian's etcd-server, 3.4).
	EnvEtcdBin = "CUSTOS_ETCD_BIN"
	// EnvEtcd36Bin names the etcd 3.6 Etcd36Binary returns (else the one
	// .ci/build-servers builds into the cache).
	EnvEtcd36Bin = "CUSTOS_ETCD36_BIN"
)

const (
	// etcdStartTimeout bounds one start: a single member elects itself
	// within one election timeout once it is up, far below this.
	etcdStartTimeout = 30 * time.Second
	// etcdHeartbeat and etcdElection are shorter than etcd's defaults so
	// the member elects itself at once; loopback has no latency to allow
	// for.
	etcdHeartbeat = 50 * time.Millisecond
	etcdElection  = 500 * time.Millisecond
)

// EtcdConfig says how to run an etcd server. The zero value runs Debian's
// etcd with its data under TempRoot.
type EtcdConfig struct {
	// Bin is the etcd binary: empty for $CUSTOS_ETCD_BIN, else etcd on
	// PATH; Etcd36Binary for the etcd 3.6 of the cache.
	Bin string
	// Dir holds the data and the log; empty for a new directory under
	// TempRoot that Stop removes.
	Dir string
	// Name is the member's name; "custos-test" when empty.
	Name string
	// Heartbeat and Election are etcd's timing; 50 ms and 500 ms when
	// zero.
	Heartbeat, Election time.Duration
	// NoFsync runs with --unsafe-no-fsync (etcd 3.5 and later): the data
	// is thrown away anyway.
	NoFsync bool
}

// Etcd is a throwaway single-member etcd server in its own process.
type Etcd struct {
	// Endpoint is the client address, "127.0.0.1:<port>".
	Endpoint string
	proc     *process
	ws       workspace
}

// ClientURL is the client URL, "http://127.0.0.1:<port>".
func (e *Etcd) ClientURL() string { return "http://" + e.Endpoint }

// Etcd36Binary is the etcd 3.6 server (kube-apiserver needs 3.5 or later):
// $CUSTOS_ETCD36_BIN, else the cache's etcd-<Etcd36Version>, waiting for a
// build of it in progress.
func Etcd36Binary() (string, error) {
	return cachedBinary(EnvEtcd36Bin, "etcd-"+Etcd36Version)
}

// StartEtcd starts an etcd server on loopback ports picked now and waits
// until it serves requests. A missing binary is an error that says what to
// install. Stop it with Stop.
func StartEtcd(cfg EtcdConfig) (*Etcd, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e, ws, err := launch("etcd", cfg.Dir, func(dir string) (*Etcd, error) { return startEtcd(cfg, dir) })
	if err != nil {
		return nil, err
	}
	e.ws = ws
	return e, nil
}

// withDefaults fills in what the zero value leaves to the launcher: the
// binary ($CUSTOS_ETCD_BIN, else etcd on PATH), the name and the timing.
func (cfg EtcdConfig) withDefaults() (EtcdConfig, error) {
	if cfg.Bin == "" {
		cfg.Bin = os.Getenv(EnvEtcdBin)
	}
	if cfg.Bin == "" {
		var err error
		if cfg.Bin, err = exec.LookPath("etcd"); err != nil {
			return cfg, fmt.Errorf("etcd not found on PATH: install the Debian package etcd-server (apt-get install etcd-server) or set %s to an etcd binary", EnvEtcdBin)
		}
	}
	if cfg.Name == "" {
		cfg.Name = "custos-test"
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = etcdHeartbeat
	}
	if cfg.Election == 0 {
		cfg.Election = etcdElection
	}
	return cfg, nil
}

func startEtcd(cfg EtcdConfig, dir string) (*Etcd, error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	args := etcdArgs(cfg, cfg.Name, dir, client, peer, cfg.Name+"="+peer)
	e := &Etcd{
		Endpoint: "127.0.0.1:" + strconv.Itoa(ports[0]),
		proc:     &process{name: "etcd", bin: cfg.Bin, args: args, logPath: filepath.Join(dir, "etcd.log")},
	}
	if err := e.launch(); err != nil {
		return nil, err
	}
	return e, nil
}

// etcdArgs are the arguments of one etcd member: its name, data under
// dir, its client and peer URLs, and the initial cluster
// ("name=peer-url,...").
func etcdArgs(cfg EtcdConfig, name, dir, client, peer, initialCluster string) []string {
	args := []string{
		"--name", name,
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", initialCluster,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", strconv.FormatInt(cfg.Heartbeat.Milliseconds(), 10),
		"--election-timeout", strconv.FormatInt(cfg.Election.Milliseconds(), 10),
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	}
	if cfg.NoFsync {
		args = append(args, "--unsafe-no-fsync")
	}
	return args
}

// launch starts the process and waits until it is healthy.
func (e *Etcd) launch() error {
	if err := e.proc.start(); err != nil {
		return err
	}
	return e.waitHealthy()
}

// waitHealthy waits until the server answers /health with true: it has a
// leader (a cluster member needs a majority of its cluster running).
func (e *Etcd) waitHealthy() error {
	client, closeClient := newHTTPClient(nil)
	defer closeClient()
	return e.proc.waitReady(etcdStartTimeout, func(ctx context.Context) error {
		body, err := httpGet(ctx, client, e.ClientURL()+"/health", "")
		if err == nil && !bytes.Contains(body, []byte(`"health":"true"`)) {
			err = fmt.Errorf("health: %s", body)
		}
		return err
	})
}

// Kill SIGKILLs the server, as a crash or a lost machine stops it, and
// waits until it is gone; its data stays for Restart. Killing a stopped
// server does nothing.
func (e *Etcd) Kill() { e.proc.kill() }

// Freeze stops the server with SIGSTOP, as a hung process or a paused
// machine stops: its connections stay open and nothing answers. Thaw
// resumes it.
func (e *Etcd) Freeze() error { return e.proc.signal(syscall.SIGSTOP, "freezing") }

// Thaw resumes a frozen server with SIGCONT. Thawing a running server does
// nothing.
func (e *Etcd) Thaw() error { return e.proc.signal(syscall.SIGCONT, "thawing") }

// Restart kills the server when it runs and starts it again on the same
// ports with the same data: the keys and leases stay, every client
// connection and watch breaks. It returns once the server serves requests.
func (e *Etcd) Restart() error {
	e.proc.kill()
	if err := e.launch(); err != nil {
		return fmt.Errorf("restarting etcd: %w", err)
	}
	return nil
}

// Stop kills the server and removes the directory StartEtcd made for it.
func (e *Etcd) Stop() {
	e.proc.kill()
	e.ws.remove()
}

// Log returns what etcd logged so far.
func (e *Etcd) Log() string { return string(e.proc.log()) }
