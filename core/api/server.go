package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Server timeouts. Health checkers send one small request per connection
// and the answers come from memory, so only slow or stuck clients ever hit
// them.
const (
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers (slowloris protection); HAProxy and kubelet send them
	// at once.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request; request bodies are small
	// JSON documents (PATCH /config, POST /switchover).
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds writing a response. Handlers that wait longer on
	// purpose (a switchover polls the DCS for up to 2*max(10s, loop_wait))
	// extend their own deadline with http.ResponseController.
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes kept-alive connections nobody reuses.
	IdleTimeout = 2 * time.Minute
	// ShutdownTimeout is how long a graceful shutdown waits for requests in
	// flight before closing their connections.
	ShutdownTimeout = 5 * time.Second
	// MaxHeaderBytes caps request headers; Patroni's clients send a few
	// hundred bytes.
	MaxHeaderBytes = 64 << 10
	// livePositionsTimeout bounds the live WAL positions read of GET
	// /patroni: a peer gives the whole answer 2 s (client.StatusTimeout),
	// so past half of that the answer comes from the last observation.
	livePositionsTimeout = time.Second
)

// Client certificate policies (restapi.verify_client).
const (
	VerifyClientNone     = "none"
	VerifyClientOptional = "optional"
	VerifyClientRequired = "required"
)

// ServerConfig is the [restapi] section as the server needs it.
type ServerConfig struct {
	// Username and Password enable basic authentication of unsafe methods
	// (POST, PUT, PATCH, DELETE) when Username is set.
	Username string
	Password string
	// CertFile and KeyFile turn on HTTPS; the pair is re-read when either
	// file changes, so certificates rotate without a restart.
	// KeyFilePassword decrypts a key with legacy PEM encryption (see
	// LoadKeyPair).
	CertFile        string
	KeyFile         string
	KeyFilePassword string
	// CAFile holds the CAs that sign client certificates.
	CAFile string
	// VerifyClient is VerifyClientNone (the default when empty),
	// VerifyClientOptional (a client certificate is checked when sent and
	// required for unsafe methods) or VerifyClientRequired (every request).
	VerifyClient string
	// Allowlist restricts unsafe methods to these client addresses: IPs,
	// CIDR networks or host names (resolved when the server starts).
	Allowlist []string
	// AllowlistIncludeMembers also admits the hosts of the members'
	// api_url, resolved at request time.
	AllowlistIncludeMembers bool
	// HTTPExtraHeaders are added to every response but the bare status
	// lines; HTTPSExtraHeaders too when TLS is on.
	HTTPExtraHeaders  map[string]string
	HTTPSExtraHeaders map[string]string
	// RequestQueueSize caps the connections served at once
	// (restapi.request_queue_size, see connLimiter); 0 means no cap.
	RequestQueueSize int
}

// Server is the REST API server.
type Server struct {
	cfg ServerConfig
	src Source
	op  Operator
	// positions reads live WAL positions for GET /patroni; nil serves the
	// snapshot's.
	positions func(context.Context) (Positions, error)
	logger    hclog.Logger
	// now is the clock; tests replace it.
	now func() time.Time
	// pollInterval and peerTimeout pace a switchover
	// (failoverPollInterval, peerStatusTimeout); tests shorten them.
	pollInterval time.Duration
	peerTimeout  time.Duration
	// routes maps a method and a first path segment to its handler.
	routes  map[string]map[string]http.Handler
	metrics prometheus.Gatherer
	// status caches the encoded status document of the newest snapshot.
	status atomic.Pointer[encodedStatus]
	// authHeader is the expected Authorization value, "" without auth.
	authHeader string
	// allowlist is the resolved restapi.allowlist.
	allowlist []*net.IPNet
	// tls: the server serves HTTPS (decides https_extra_headers and the
	// client certificate check of unsafe methods).
	tls bool
}

type encodedStatus struct {
	snap *Snapshot
	body []byte
}

// Option changes a server made by New.
type Option func(*Server)

// WithOperator makes the server serve the mutating endpoints (switchover,
// failover, restart, reinitialize, reload, PATCH and PUT /config) through
// op. Without it the server is read-only and they answer 501, as unknown
// paths do.
func WithOperator(op Operator) Option {
	return func(s *Server) { s.op = op }
}

// Positions are PostgreSQL's WAL positions read at request time.
type Positions struct {
	// InRecovery selects the replica form of xlog.
	InRecovery bool
	// Location is a primary's current WAL position.
	Location int64
	// Received and Replayed are a replica's positions.
	Received, Replayed int64
}

// ErrNotRunning is what a live positions reader returns when the
// postmaster is gone.
var ErrNotRunning = errors.New("postgres is not running")

// WithLivePositions makes GET /patroni read the WAL positions from
// PostgreSQL at request time (one short query), as Patroni does, instead
// of serving those of the last HA cycle: the leader race and a
// switchover's hand-off compare positions that must not be a loop old.
// Health checks keep answering from the snapshot alone.
func WithLivePositions(f func(context.Context) (Positions, error)) Option {
	return func(s *Server) { s.positions = f }
}

// New returns a server answering from src. Nothing is checked or opened
// until Serve.
func New(cfg ServerConfig, src Source, logger hclog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{
		cfg:          cfg,
		src:          src,
		logger:       logger,
		now:          time.Now,
		pollInterval: failoverPollInterval,
		peerTimeout:  peerStatusTimeout,
		routes:       map[string]map[string]http.Handler{},
		metrics:      newRegistry(src),
	}
	for _, o := range opts {
		o(s)
	}
	if cfg.Username != "" {
		s.authHeader = basicAuthHeader(cfg.Username, cfg.Password)
	}
	s.handle(http.MethodGet, "patroni", s.getPatroni)
	s.handle(http.MethodGet, "cluster", s.getCluster)
	s.handle(http.MethodGet, "history", s.getHistory)
	s.handle(http.MethodGet, "config", s.getConfig)
	s.handle(http.MethodGet, "failsafe", s.getFailsafe)
	s.handle(http.MethodGet, "metrics", s.getMetrics)
	s.handle(http.MethodGet, "liveness", s.getLiveness)
	s.handle(http.MethodGet, "readiness", s.getReadiness)
	if s.op != nil {
		s.handle(http.MethodPost, "switchover", s.postSwitchover)
		s.handle(http.MethodPost, "failover", s.postFailover)
		s.handle(http.MethodDelete, "switchover", s.deleteSwitchover)
		s.handle(http.MethodPost, "restart", s.postRestart)
		s.handle(http.MethodDelete, "restart", s.deleteRestart)
		s.handle(http.MethodPost, "reinitialize", s.postReinitialize)
		s.handle(http.MethodPost, "reload", s.postReload)
		s.handle(http.MethodPatch, "config", s.patchConfig)
		s.handle(http.MethodPut, "config", s.putConfig)
		s.handle(http.MethodPost, "failsafe", s.postFailsafe)
	}
	return s
}

// handle routes METHOD /segment/... to h. Unsafe methods pass the access
// checks (requireAccess) before h runs.
func (s *Server) handle(method, segment string, h http.HandlerFunc) {
	var handler http.Handler = h
	if unsafeMethod(method) {
		handler = s.requireAccess(h)
	}
	if s.routes[method] == nil {
		s.routes[method] = map[string]http.Handler{}
	}
	s.routes[method][segment] = handler
}

func unsafeMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// firstSegment is the path's first segment, the routing key ("" for "/").
func firstSegment(path string) string {
	path = strings.TrimLeft(path, "/")
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return path
}

// ServeHTTP routes a request as Patroni does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rec *statusRecorder
	if s.logger.IsDebug() {
		start := s.now()
		rec = &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		w = rec
		defer func() {
			s.logger.Debug("request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"status", rec.code, "duration", s.now().Sub(start))
		}()
	}
	if h, ok := s.routes[r.Method][firstSegment(r.URL.Path)]; ok {
		h.ServeHTTP(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.serveHealth(w, r, false)
	case http.MethodHead, http.MethodOptions:
		s.serveHealth(w, r, true)
	default:
		s.writeText(w, http.StatusNotImplemented, "Unsupported method")
	}
}

// statusRecorder remembers the status code for the debug log.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// snapshot returns the newest snapshot, or answers 503 and returns nil
// before the first one (bare when bare is set).
func (s *Server) snapshot(w http.ResponseWriter, bare bool) *Snapshot {
	snap := s.src.Snapshot()
	if snap == nil {
		if bare {
			s.writeBare(w, unhealthy)
		} else {
			s.writeText(w, http.StatusServiceUnavailable, "agent is starting: no state published yet")
		}
	}
	return snap
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, bare bool) {
	snap := s.snapshot(w, bare)
	if snap == nil {
		return
	}
	status := healthCheck(snap, r.URL.Path, parseQuery(r.URL.RawQuery), s.now())
	if bare {
		s.writeBare(w, status)
		return
	}
	s.writeStatus(w, snap, status)
}

// writeStatus answers with the snapshot's status document, encoded once per
// snapshot.
func (s *Server) writeStatus(w http.ResponseWriter, snap *Snapshot, status int) {
	enc := s.status.Load()
	if enc == nil || enc.snap != snap {
		body, err := json.Marshal(snap.Status)
		if err != nil {
			s.logger.Error("encoding the status document", "error", err)
			s.writeText(w, http.StatusInternalServerError, "encoding the status document failed")
			return
		}
		enc = &encodedStatus{snap: snap, body: body}
		s.status.Store(enc)
	}
	s.writeBody(w, status, "application/json", enc.body)
}

// writeBare answers with only a status line ("HTTP/1.0 200 OK\r\n\r\n")
// and closes the connection: no headers, no body, as HAProxy's httpchk and
// Patroni's status-only answers expect. net/http always writes headers, so
// the connection is hijacked. Where it cannot be (HTTP/2, test recorders)
// the status goes out the normal way.
func (s *Server) writeBare(w http.ResponseWriter, status int) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.WriteHeader(status)
		return
	}
	defer func() { _ = conn.Close() }()
	if rec, ok := w.(*statusRecorder); ok {
		rec.code = status
	}
	_, _ = fmt.Fprintf(buf, "HTTP/1.0 %d %s\r\n\r\n", status, http.StatusText(status))
	if err := buf.Flush(); err != nil {
		s.logger.Debug("writing a bare status line", "error", err)
	}
}

func (s *Server) setExtraHeaders(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range s.cfg.HTTPExtraHeaders {
		h.Set(k, v)
	}
	if s.tls {
		for k, v := range s.cfg.HTTPSExtraHeaders {
			h.Set(k, v)
		}
	}
}

func (s *Server) writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	s.setExtraHeaders(w)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeText answers with a plain message, as Patroni's write_response does
// (its content type is text/html).
func (s *Server) writeText(w http.ResponseWriter, status int, msg string) {
	s.writeBody(w, status, "text/html; charset=utf-8", []byte(msg))
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.logger.Error("encoding a response", "error", err)
		s.writeText(w, http.StatusInternalServerError, "encoding the response failed")
		return
	}
	s.writeBody(w, status, "application/json", body)
}

// getPatroni is GET /patroni: always 200 with the status document.
func (s *Server) getPatroni(w http.ResponseWriter, r *http.Request) {
	snap := s.snapshot(w, false)
	if snap == nil {
		return
	}
	if s.positions != nil && snap.Status.XLog != nil {
		ctx, cancel := context.WithTimeout(r.Context(), livePositionsTimeout)
		p, err := s.positions(ctx)
		cancel()
		if err != nil && !errors.Is(err, ErrNotRunning) {
			s.logger.Debug("GET /patroni answers with the positions of the last observation", "error", err)
		}
		if errors.Is(err, ErrNotRunning) {
			// The postmaster died after the last cycle: until the next one
			// publishes it, answer as Patroni does when its query fails on
			// a server it believed running, without positions, so that a
			// member racing for the leader key does not count this one as a
			// running primary (or as a replica ahead of it).
			st := snap.Status
			st.XLog = nil
			if st.State == StateRunning {
				st.State = "unknown"
			}
			s.writeJSON(w, http.StatusOK, st)
			return
		}
		if err == nil {
			st := snap.Status
			x := *st.XLog
			if p.InRecovery == (x.Location == nil) {
				if p.InRecovery {
					x.ReceivedLocation, x.ReplayedLocation = &p.Received, &p.Replayed
				} else {
					x.Location = &p.Location
				}
				st.XLog = &x
				s.writeJSON(w, http.StatusOK, st)
				return
			}
		}
	}
	s.writeStatus(w, snap, http.StatusOK)
}

// getCluster is GET /cluster: the cluster document of the last DCS view.
func (s *Server) getCluster(w http.ResponseWriter, _ *http.Request) {
	snap := s.snapshot(w, false)
	if snap == nil {
		return
	}
	if snap.Cluster == nil {
		s.writeText(w, http.StatusServiceUnavailable, "the DCS has not been read yet")
		return
	}
	s.writeJSON(w, http.StatusOK, NewClusterInfo(snap.Cluster, snap.Status.Patroni.Scope, snap.Dynamic))
}

// getHistory is GET /history: the /history lines, [] when absent.
func (s *Server) getHistory(w http.ResponseWriter, _ *http.Request) {
	snap := s.snapshot(w, false)
	if snap == nil {
		return
	}
	body := []byte("[]")
	if c := snap.Cluster; c != nil && c.HasHistory {
		body = c.History.Marshal()
	}
	s.writeBody(w, http.StatusOK, "application/json", body)
}

// getConfig is GET /config: the raw /config value; 502 when it is absent or
// not a JSON object (Patroni 4.x).
func (s *Server) getConfig(w http.ResponseWriter, _ *http.Request) {
	snap := s.snapshot(w, false)
	if snap == nil {
		return
	}
	var raw []byte
	if c := snap.Cluster; c != nil && c.Config != nil {
		raw = bytes.TrimSpace(c.Config.Data)
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		s.writeText(w, http.StatusBadGateway, "no valid /config in the DCS")
		return
	}
	s.writeBody(w, http.StatusOK, "application/json", raw)
}

// getFailsafe is GET /failsafe: the last /failsafe value; 502 when failsafe
// mode is off.
func (s *Server) getFailsafe(w http.ResponseWriter, _ *http.Request) {
	snap := s.snapshot(w, false)
	if snap == nil {
		return
	}
	if snap.Failsafe == nil {
		s.writeText(w, http.StatusBadGateway, "failsafe mode is not active")
		return
	}
	s.writeJSON(w, http.StatusOK, snap.Failsafe)
}

// getMetrics is GET /metrics in the Prometheus text format.
func (s *Server) getMetrics(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	if err := writeMetrics(&buf, s.metrics); err != nil {
		s.logger.Error("rendering metrics", "error", err)
		s.writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.writeBody(w, http.StatusOK, metricsContentType, buf.Bytes())
}

// getLiveness is GET /liveness: a bare status line.
func (s *Server) getLiveness(w http.ResponseWriter, _ *http.Request) {
	if snap := s.snapshot(w, true); snap != nil {
		s.writeBare(w, livenessCheck(snap, s.now()))
	}
}

// getReadiness is GET /readiness: a bare status line.
func (s *Server) getReadiness(w http.ResponseWriter, r *http.Request) {
	if snap := s.snapshot(w, true); snap != nil {
		s.writeBare(w, readinessCheck(snap, parseQuery(r.URL.RawQuery), s.now()))
	}
}

// Serve answers requests on ln until ctx ends, then shuts down gracefully:
// it stops accepting, waits up to ShutdownTimeout for requests in flight and
// closes what is left. It returns nil after a shutdown, or the error that
// stopped it. ln is closed in every case. A *Listener from Listen comes with
// its TLS material and allowlist ready; for any other listener Serve loads
// them first.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr().String()
	var p *prepared
	if l, ok := ln.(*Listener); ok {
		p, ln = l.prepared, l.Listener
	} else {
		var err error
		if p, err = prepare(ctx, s.cfg); err != nil {
			_ = ln.Close()
			return fmt.Errorf("starting the REST API on %s: %w", addr, err)
		}
	}
	s.use(p)
	tlsCfg := p.tls
	if s.op != nil && unsafeEndpointsExposed(s.cfg, ln.Addr()) {
		s.logger.Warn("the REST API's unsafe endpoints (switchover, failover, restart, reinitialize, reload, config) are open to anyone who can reach this address: "+
			"set restapi.authentication, restapi.allowlist or restapi.verify_client", "address", addr)
	}
	var connState func(net.Conn, http.ConnState)
	if s.cfg.RequestQueueSize > 0 {
		limited := newConnLimiter(ln, s.cfg.RequestQueueSize)
		ln, connState = limited, limited.connState
	}
	srv := &http.Server{
		ConnState:         connState,
		Handler:           s,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		// HTTP/2 connections cannot be hijacked for bare status lines.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		// "OPTIONS *" is a health check like any other path.
		DisableGeneralOptionsHandler: true,
		// TLS handshake errors from TCP-only probes are noise.
		ErrorLog: s.logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.logger.Info("REST API listening", "address", addr, "tls", tlsCfg != nil, "request_queue_size", s.cfg.RequestQueueSize)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving the REST API on %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		s.logger.Warn("REST API shutdown timed out; closing open connections", "error", err)
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the REST API on %s: %w", addr, err)
	}
	return nil
}
