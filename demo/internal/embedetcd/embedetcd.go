package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

const (
	// startTimeout bounds one start: a single member elects itself within
	// one election timeout once its listeners are up, far below this.
	startTimeout = 30 * time.Second
	// startAttempts retries a start that lost one of its ports to another
	// process between picking it and etcd binding it.
	startAttempts = 3
	// heartbeatMS and electionMS are shorter than etcd's defaults (100 and
	// 1000) so the single member elects itself at once; loopback has no
	// latency to allow for.
	heartbeatMS = 50
	electionMS  = 500
	// memberName names the single member.
	memberName = "custos-demo"
)

// Server is a running embedded etcd.
type Server struct {
	// Endpoint is the client address, "127.0.0.1:<port>".
	Endpoint string
	// LogPath is the file etcd logs to.
	LogPath string
	etcd    *embed.Etcd
}

// Start starts etcd with its data directory and log file under dir (which
// must exist) and returns once it serves requests. fsync is off
// (UnsafeNoFsync): the data is throwaway and fsyncs on a busy disk would
// only slow the demo down. ctx bounds the start.
func Start(ctx context.Context, dir string) (*Server, error) {
	var errs []error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := tkcluster.FreePorts(2)
		if err != nil {
			return nil, fmt.Errorf("starting the embedded etcd: %w", err)
		}
		s, err := start(ctx, filepath.Join(dir, "etcd-"+strconv.Itoa(attempt)), ports[0], ports[1])
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if !isAddrInUse(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("starting the embedded etcd: %w", errors.Join(errs...))
}

// start starts etcd on the given client and peer ports.
func start(ctx context.Context, dir string, clientPort, peerPort int) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	logPath := filepath.Join(dir, "etcd.log")

	cfg := embed.NewConfig()
	cfg.Name = memberName
	cfg.Dir = filepath.Join(dir, "data")
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(memberName)
	cfg.TickMs = heartbeatMS
	cfg.ElectionMs = electionMS
	cfg.UnsafeNoFsync = true
	// embed leaves this at 0, which logs every request as slow; the etcd
	// command's default logs only those over 300 ms.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{logPath}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: client.Host, LogPath: logPath, etcd: e}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return s, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed during start-up: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("etcd not ready after %v (log: %s)", startTimeout, logPath)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// Stop stops etcd and waits until its listeners are closed.
func (s *Server) Stop() {
	s.etcd.Close()
}

// Err reports a fatal error of the running server.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
