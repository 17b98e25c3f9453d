package consul

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Consul's session limits and what follows from them.
const (
	// MinSessionTTL is Consul's default session_ttl_min: a session asked for
	// with a shorter TTL is refused.
	MinSessionTTL = 10 * time.Second
	// maxSessionTTL is Consul's upper bound on a session TTL.
	maxSessionTTL = 24 * time.Hour
	// MinTTL is the smallest member TTL the backend honours: the session TTL
	// is half the member TTL (Consul invalidates a session up to twice its
	// TTL after the last renewal), and may not be below MinSessionTTL.
	MinTTL = 2 * MinSessionTTL
	// lockDelay is the session's lock-delay, Patroni's 0.001 s: Consul's
	// default of 15 s would keep the leader key from being taken for 15 s
	// after its holder's session was invalidated.
	lockDelay = time.Millisecond
	// defaultOpTimeout bounds one operation when the host gives no retry
	// timeout: long enough for a TLS handshake over a slow link, short
	// against Patroni's 10 s retry_timeout default.
	defaultOpTimeout = 5 * time.Second
)

// Capabilities announced in the plugin's identity.
const (
	// CapMaxValueBytes is the conformance kit's capability naming the largest
	// value the store holds (dcstest.CapMaxValueBytes).
	CapMaxValueBytes = "dcs.max_value_bytes"
	// maxValueBytes is Consul's default kv_max_value_size (512 KiB): a larger
	// value is refused with 413 unless the servers raise the limit.
	maxValueBytes = 512 << 10
	// ExpiryDelay is how long after the TTL an unrenewed key may still be
	// seen. Keys go when the Consul leader's session timer fires, 2 x the
	// session TTL (= the member TTL) after the last renewal, plus one Raft
	// commit; measured at well under 100 ms on one agent. The bound leaves
	// room for a loaded server. A Consul leader election restarts every
	// session's timer, which can delay expiry by up to a TTL more; no fixed
	// bound covers that.
	ExpiryDelay = 500 * time.Millisecond
)

// Capabilities returns what the plugin announces in its identity: the
// smallest TTL, how late keys may expire, the largest value.
func Capabilities() map[string]string {
	return map[string]string{
		dcs.CapMinTTL:      strconv.Itoa(int(MinTTL / time.Second)),
		dcs.CapExpiryDelay: strconv.Itoa(int(ExpiryDelay / time.Millisecond)),
		CapMaxValueBytes:   strconv.Itoa(maxValueBytes),
	}
}

// Backend is the Consul implementation of dcs.Backend. Build it with New;
// it is safe for concurrent use.
type Backend struct {
	logger hclog.Logger

	mu           sync.Mutex
	client       *api.Client
	transport    *http.Transport
	cfg          *Config
	closed       bool
	done         context.Context // cancelled by Close: ends every call in flight
	cancel       context.CancelFunc
	prefix       string // "service/<scope>/", no leading slash
	scope        string
	member       string
	ttl          time.Duration
	retryTimeout time.Duration

	// sessionMu serialises session renewals and creations so that
	// concurrent operations never create two sessions.
	sessionMu  sync.Mutex
	session    string
	sessionTTL time.Duration // the TTL the session was created with

	// serviceMu guards what was last registered with the agent.
	serviceMu sync.Mutex
	service   serviceState
}

var _ dcs.Backend = (*Backend)(nil)

// New returns an unconfigured backend.
func New(logger hclog.Logger) *Backend {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Backend{logger: logger}
}

// Validate checks the [dcs.consul] section without connecting anywhere.
func (b *Backend) Validate(_ context.Context, config []byte) error {
	_, err := ParseConfig(config)
	return err
}

// KeyPrefix maps the cluster prefix onto Consul's key space: Patroni's
// "/<namespace>/<scope>/" without its leading slash.
func KeyPrefix(namespace, scope string) string {
	return strings.TrimPrefix(dcs.Prefix(namespace, scope), "/")
}

// SessionTTL is the TTL of the member's session for a member TTL: half of
// it, since Consul invalidates a session up to twice its TTL after the last
// renewal.
func SessionTTL(ttl time.Duration) time.Duration { return ttl / 2 }

// effectiveTTL raises a TTL below MinTTL to it.
func effectiveTTL(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl <= 0:
		return 0, fmt.Errorf("ttl %v is not positive", ttl)
	case SessionTTL(ttl) > maxSessionTTL:
		return 0, fmt.Errorf("ttl %v is above Consul's limit of %v", ttl, 2*maxSessionTTL)
	case ttl < MinTTL:
		return MinTTL, nil
	}
	return ttl, nil
}

// Configure validates the section, creates the Consul client and binds the
// backend to the cluster and member. Connecting is lazy: an unreachable
// agent shows up in the first operation. The session is created by the
// first operation that needs it.
func (b *Backend) Configure(_ context.Context, req dcs.ConfigureRequest) error {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.Scope == "" {
		return errors.New("configuring consul: empty scope")
	}
	if req.Member == "" {
		return errors.New("configuring consul: empty member name")
	}
	ttl, err := effectiveTTL(req.TTL)
	if err != nil {
		return fmt.Errorf("configuring consul: %w", err)
	}
	if ttl != req.TTL {
		b.logger.Warn("ttl raised to Consul's minimum", "ttl", req.TTL.String(), "min_ttl", ttl.String())
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	if tlsCfg == nil && (cfg.TLS.CACert != "" || cfg.TLS.Cert != "") {
		b.logger.Warn("cacert/cert are set but the scheme is http; set scheme = \"https\" to use TLS", "address", cfg.Address())
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsCfg
	// Every blocking query holds a connection; the member's own calls need
	// a few more.
	transport.MaxIdleConnsPerHost = 4
	client, err := api.NewClient(&api.Config{
		Address:    cfg.Address(),
		Scheme:     cfg.Scheme,
		Datacenter: cfg.DC,
		Token:      string(cfg.Token),
		Transport:  transport,
		HttpClient: &http.Client{Transport: transport},
	})
	if err != nil {
		return fmt.Errorf("configuring consul: creating the client: %w", err)
	}
	done, cancel := context.WithCancel(context.Background())

	b.mu.Lock()
	oldTransport, oldCancel := b.transport, b.cancel
	b.client, b.transport, b.cfg = client, transport, cfg
	b.done, b.cancel, b.closed = done, cancel, false
	b.prefix = KeyPrefix(req.Namespace, req.Scope)
	b.scope, b.member = req.Scope, req.Member
	b.ttl = ttl
	b.retryTimeout = req.RetryTimeout
	b.mu.Unlock()
	b.sessionMu.Lock()
	b.session = ""
	b.sessionMu.Unlock()
	b.serviceMu.Lock()
	b.service = serviceState{}
	b.serviceMu.Unlock()
	if oldCancel != nil {
		oldCancel()
		oldTransport.CloseIdleConnections()
	}
	b.logger.Info("configured", "address", cfg.Address(), "scheme", cfg.Scheme, "dc", cfg.DC,
		"prefix", b.prefix, "member", req.Member, "ttl", ttl.String(), "session_ttl", SessionTTL(ttl).String(),
		"consistency", cfg.Consistency, "register_service", cfg.RegisterService, "token", cfg.Token != "")
	return nil
}

// SetTTL changes the TTL. A Consul session keeps the TTL it was created
// with, so the next renewal creates a new session and the member's keys
// move onto it (RenewLeader and TouchMember find them held by the old
// one), as Patroni does. The old session is left to expire.
func (b *Backend) SetTTL(_ context.Context, ttl time.Duration) error {
	eff, err := effectiveTTL(ttl)
	if err != nil {
		return fmt.Errorf("setting ttl: %w", err)
	}
	b.mu.Lock()
	changed := b.ttl != eff
	b.ttl = eff
	b.mu.Unlock()
	if changed {
		b.logger.Info("ttl changed; a new session will be created", "ttl", eff.String(), "session_ttl", SessionTTL(eff).String())
	}
	return nil
}

// Close ends every call in flight (an open Watch returns) and drops the
// client's connections. It does not destroy the session: like Patroni,
// custos leaves the member key (and a leader key not released with
// DeleteLeader) to expire one TTL later, so that a restarting agent or
// plugin can still renew what it holds.
func (b *Backend) Close(_ context.Context) error {
	b.mu.Lock()
	transport, cancel := b.transport, b.cancel
	b.client, b.transport, b.cancel = nil, nil, nil
	b.closed = true
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if transport != nil {
		transport.CloseIdleConnections()
	}
	return nil
}

// state is what one operation needs, read once under the lock.
type state struct {
	client       *api.Client
	cfg          *Config
	done         context.Context
	prefix       string
	scope        string
	member       string
	ttl          time.Duration
	retryTimeout time.Duration
}

func (s state) key(rel string) string { return s.prefix + rel }

// errNotConfigured and errClosed are returned by operations on a backend
// that has no client.
var (
	errNotConfigured = fmt.Errorf("consul backend not configured: %w", dcs.ErrUnavailable)
	errClosed        = fmt.Errorf("consul backend closed: %w", dcs.ErrUnavailable)
)

func (b *Backend) state() (state, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil {
		if b.closed {
			return state{}, errClosed
		}
		return state{}, errNotConfigured
	}
	return state{
		client: b.client, cfg: b.cfg, done: b.done, prefix: b.prefix, scope: b.scope,
		member: b.member, ttl: b.ttl, retryTimeout: b.retryTimeout,
	}, nil
}

// opContext bounds one operation by the retry timeout and ends it when the
// backend is closed.
func (s state) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := s.retryTimeout
	if timeout <= 0 {
		timeout = defaultOpTimeout
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	stop := context.AfterFunc(s.done, cancel)
	return octx, func() {
		stop()
		cancel()
	}
}

// read returns the options of a read in the configured consistency mode.
func (s state) read(ctx context.Context) *api.QueryOptions {
	q := &api.QueryOptions{}
	switch s.cfg.Consistency {
	case ConsistencyConsistent:
		q.RequireConsistent = true
	case ConsistencyStale:
		q.AllowStale = true
	}
	return q.WithContext(ctx)
}

// check returns the options of a read that decides a write (the leader
// key's holder before renewing or deleting it): always consistent.
func (s state) check(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
}

// txn returns the options of a transaction that writes.
func (s state) txn(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func (s state) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// storeErr turns an error from Consul into the contract's: the caller's own
// cancellation stays a context error; a closed backend says so; everything
// else (unreachable, timed out, no cluster leader, refused) means the store
// is in trouble. The Consul error is kept in the message only.
func storeErr(ctx context.Context, s state, op string, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s: %w", op, ctx.Err())
	case s.done.Err() != nil:
		return fmt.Errorf("%s: %w", op, errClosed)
	}
	return fmt.Errorf("%s: %w: %v", op, dcs.ErrUnavailable, err)
}

// errLockFailed is a lock (acquire) that Consul refused although the key
// was free for it: the session is gone, or the key's lock-delay runs.
var errLockFailed = fmt.Errorf("lock refused: %w", dcs.ErrUnavailable)

// withSession runs fn with this member's session, renewed (or created)
// just before. When fn fails because Consul no longer knows the session
// (invalidated between the renewal and the write, or destroyed by an
// operator), it runs once more with a new one.
func (b *Backend) withSession(ctx context.Context, s state, fn func(session string) error) error {
	for attempt := 0; ; attempt++ {
		id, err := b.renewSession(ctx, s)
		if err != nil {
			return err
		}
		err = fn(id)
		if err == nil || attempt > 0 || isContractErr(err) || ctx.Err() != nil {
			return err
		}
		info, _, ierr := s.client.Session().Info(id, s.check(ctx))
		if ierr != nil || info != nil {
			return err
		}
		b.logger.Warn("session vanished during a write; creating a new one", "session", id, "error", err)
		b.dropSession(id)
	}
}

func isContractErr(err error) bool {
	return errors.Is(err, dcs.ErrExists) || errors.Is(err, dcs.ErrVersionMismatch) || errors.Is(err, dcs.ErrNotFound)
}

// renewSession renews the member's session, or creates one when there is
// none, Consul no longer knows it, or the TTL changed.
func (b *Backend) renewSession(ctx context.Context, s state) (string, error) {
	b.sessionMu.Lock()
	defer b.sessionMu.Unlock()
	ttl := SessionTTL(s.ttl)
	if b.session != "" && b.sessionTTL == ttl {
		entry, _, err := s.client.Session().Renew(b.session, s.write(ctx))
		if err != nil {
			return "", storeErr(ctx, s, "renewing session "+b.session, err)
		}
		if entry != nil {
			return b.session, nil
		}
		b.logger.Warn("session expired; creating a new one", "session", b.session)
		b.session = ""
	}
	entry := &api.SessionEntry{
		Name:       s.scope + "-" + s.member,
		TTL:        formatSeconds(ttl),
		Behavior:   api.SessionBehaviorDelete,
		LockDelay:  lockDelay,
		NodeChecks: s.cfg.Checks,
	}
	var (
		id  string
		err error
	)
	if len(s.cfg.Checks) == 0 {
		// Without this, Consul ties the session to the node's serfHealth
		// check; Patroni's sessions depend on their TTL alone.
		id, _, err = s.client.Session().CreateNoChecks(entry, s.write(ctx))
	} else {
		id, _, err = s.client.Session().Create(entry, s.write(ctx))
	}
	if err != nil {
		return "", storeErr(ctx, s, "creating session "+entry.Name, err)
	}
	if b.session != "" {
		b.logger.Info("session created for a new ttl", "session", id, "old_session", b.session, "ttl", entry.TTL)
	} else {
		b.logger.Debug("session created", "session", id, "ttl", entry.TTL)
	}
	b.session, b.sessionTTL = id, ttl
	return id, nil
}

func (b *Backend) dropSession(id string) {
	b.sessionMu.Lock()
	defer b.sessionMu.Unlock()
	if b.session == id {
		b.session = ""
	}
}

// currentSession is the session the member's keys should be held by, ""
// when there is none yet.
func (b *Backend) currentSession() string {
	b.sessionMu.Lock()
	defer b.sessionMu.Unlock()
	return b.session
}

// formatSeconds renders a duration as Consul reads a session TTL: "15s",
// "12.5s".
func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

func indexString(i uint64) string { return strconv.FormatUint(i, 10) }

// parseVersion reads a version handed back by the host.
func parseVersion(version string) (uint64, error) {
	i, err := strconv.ParseUint(version, 10, 64)
	if err != nil || i == 0 {
		return 0, fmt.Errorf("version %q is not a Consul ModifyIndex: %w", version, dcs.ErrVersionMismatch)
	}
	return i, nil
}
