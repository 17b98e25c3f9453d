package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Listener is the REST API's socket with its TLS material loaded and its
// allowlist resolved: everything that can stop the REST API from serving,
// checked at once so that the agent can refuse to start (before it starts
// PostgreSQL or races for the leader key) instead of running a member no
// health check and no peer can ask. Serve takes it like any listener.
type Listener struct {
	net.Listener
	prepared *prepared
}

// Listen prepares cfg (certificate, key, CA file, allowlist) and listens on
// addr (Patroni's restapi.listen: "host:port", with "" or "*" for every
// address). Every error is a *KeyError naming the key to fix.
func Listen(ctx context.Context, cfg ServerConfig, addr string) (*Listener, error) {
	p, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, keyErrorf("restapi.listen", "%q: %w", addr, err)
	}
	if host == "*" {
		host = ""
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, keyErrorf("restapi.listen", "%s is in use by another process: %w", addr, err)
		}
		return nil, keyErrorf("restapi.listen", "listening on %s: %w", addr, err)
	}
	return &Listener{Listener: ln, prepared: p}, nil
}

// ListenAndServe listens on addr (see Listen) and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := Listen(ctx, s.cfg, addr)
	if err != nil {
		return fmt.Errorf("starting the REST API on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// unsafeEndpointsExposed reports whether the unsafe endpoints (POST, PUT,
// PATCH, DELETE: switchover, failover, restart, reinitialize, config...)
// answer anyone who can reach addr: the address is not a loopback one, and
// neither basic authentication, nor an allowlist, nor client certificates
// guard them. Patroni starts that way too; custos says so at start.
func unsafeEndpointsExposed(cfg ServerConfig, addr net.Addr) bool {
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return false
	}
	if cfg.Username != "" || len(cfg.Allowlist) > 0 || cfg.AllowlistIncludeMembers {
		return false
	}
	// With verify_client optional or required, an unsafe request needs a
	// certificate signed by cafile (requireAccess).
	if cfg.CertFile != "" && (cfg.VerifyClient == VerifyClientOptional || cfg.VerifyClient == VerifyClientRequired) {
		return false
	}
	return true
}
