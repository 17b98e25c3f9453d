package etcd3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Timing defaults.
const (
	// defaultDialTimeout bounds the connection set-up (and the token fetch
	// when authenticating) when the host gives no retry timeout: long enough
	// for a TLS handshake over a slow link, short against Patroni's 10 s
	// retry_timeout default.
	defaultDialTimeout = 5 * time.Second
	// keepaliveTime is how often an idle gRPC connection is pinged so that a
	// dead etcd member is noticed and the balancer moves on; gRPC does not
	// accept less than 10 s.
	keepaliveTime = 10 * time.Second
	// keepaliveTimeout is how long a ping may stay unanswered before the
	// connection counts as dead.
	keepaliveTimeout = 5 * time.Second
	// maxSendBytes lets a 1 MiB value plus its key and framing through; etcd's
	// own default request limit is 1.5 MiB.
	maxSendBytes = 2 << 20
	// memberRefreshDivisor: TouchMember keeps the lease alive only once its
	// last refresh is older than ttl/memberRefreshDivisor. With Patroni's
	// timing rule (loop_wait + 2 x retry_timeout <= ttl) a member touching
	// its key every loop_wait refreshes it at least every ttl/3 + loop_wait,
	// well within ttl, and a replica with loop_wait 1 s and ttl 10 s sends a
	// keep-alive every fourth cycle instead of every cycle.
	memberRefreshDivisor = 3
)

// Backend is the etcd v3 implementation of dcs.Backend. Build it with New;
// it is safe for concurrent use.
type Backend struct {
	logger hclog.Logger
	// lookupSRV resolves SRV records; tests replace it.
	lookupSRV srvLookup

	mu           sync.Mutex
	client       *clientv3.Client
	cache        *cache
	closed       bool
	prefix       string
	member       string
	ttl          int64 // seconds
	retryTimeout time.Duration
	// attempt bounds one attempt of a request (see attemptTimeout).
	attempt time.Duration

	// leaseMu serialises lease grants and keep-alives so that concurrent
	// renewals never grant two leases.
	leaseMu sync.Mutex
	lease   clientv3.LeaseID // 0: none yet, or dropped after a TTL change
	// refreshed is when the last successful keep-alive or grant of lease
	// was sent: etcd keeps the lease at least until refreshed + ttl.
	refreshed time.Time

	// seen is the newest etcd revision this backend has written or read
	// (guarded by mu): reads from the cache wait for it.
	seen int64
	// failing: the last request to etcd failed and none succeeded since
	// (guarded by mu). GetCluster then reads etcd with a linearizable Range
	// instead of trusting the watch: an etcd member cut off from its
	// leader still answers progress requests until it ends its watches
	// (some election timeouts later), and a primary whose renewals fail must
	// see its reads fail as before, to demote within retry_timeout.
	failing bool
}

var _ dcs.Backend = (*Backend)(nil)

// New returns an unconfigured backend.
func New(logger hclog.Logger) *Backend {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Backend{logger: logger, lookupSRV: net.DefaultResolver.LookupSRV}
}

// Validate checks the [dcs.etcd3] section without connecting anywhere.
func (b *Backend) Validate(_ context.Context, config []byte) error {
	_, err := ParseConfig(config)
	return err
}

// Configure validates the section, creates the etcd client and binds the
// backend to the cluster and member. Connecting is lazy: an unreachable
// etcd shows up in the first operation (except when authenticating, which
// fetches a token here).
func (b *Backend) Configure(ctx context.Context, req dcs.ConfigureRequest) error {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.Scope == "" {
		return errors.New("configuring etcd3: empty scope")
	}
	if req.Member == "" {
		return errors.New("configuring etcd3: empty member name")
	}
	ttl, err := ttlSeconds(req.TTL)
	if err != nil {
		return fmt.Errorf("configuring etcd3: %w", err)
	}
	endpoints, from, err := cfg.endpoints(ctx, b.lookupSRV)
	if err != nil {
		return fmt.Errorf("configuring etcd3: %w: %w", dcs.ErrUnavailable, err)
	}
	tlsCfg, err := cfg.tlsConfig(endpoints)
	if err != nil {
		return err
	}
	if tlsCfg == nil && (cfg.TLS.CACert != "" || cfg.TLS.Cert != "") {
		b.logger.Warn("cacert/cert are set but every endpoint uses http; set protocol = \"https\" to use TLS", "endpoints", endpoints)
	}
	dialTimeout := defaultDialTimeout
	if req.RetryTimeout > 0 {
		dialTimeout = req.RetryTimeout
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < dialTimeout {
		dialTimeout = max(time.Until(dl), time.Millisecond)
	}
	user, password := cfg.credentials()
	reconnect := newReconnector(b.logger.Named("client"))
	client, err := clientv3.New(clientv3.Config{
		DialOptions:          reconnect.dialOptions(),
		Endpoints:            endpoints,
		DialTimeout:          dialTimeout,
		DialKeepAliveTime:    keepaliveTime,
		DialKeepAliveTimeout: keepaliveTimeout,
		PermitWithoutStream:  true,
		MaxCallSendMsgSize:   maxSendBytes,
		TLS:                  tlsCfg,
		Username:             user,
		Password:             password,
		Logger:               zapLogger(b.logger.Named("client")),
	})
	if err != nil {
		return b.storeErr(ctx, "connecting to etcd", err)
	}
	reconnect.client.Store(client)

	prefix := dcs.Prefix(req.Namespace, req.Scope)
	readTimeout := defaultDialTimeout
	if req.RetryTimeout > 0 {
		readTimeout = req.RetryTimeout
	}
	attempt := attemptTimeout(req.RetryTimeout, len(endpoints))
	c := newCache(b.logger.Named("cache"), client, prefix, readTimeout, attempt)
	c.reconnect = reconnect
	c.start()

	b.mu.Lock()
	old, oldCache := b.client, b.cache
	b.client = client
	b.cache = c
	b.closed = false
	b.prefix = prefix
	b.member = req.Member
	b.ttl = ttl
	b.retryTimeout = req.RetryTimeout
	b.attempt = attempt
	b.seen = 0
	b.failing = false
	b.mu.Unlock()
	b.leaseMu.Lock()
	b.lease = 0
	b.leaseMu.Unlock()
	if oldCache != nil {
		oldCache.close()
	}
	if old != nil {
		_ = old.Close()
	}
	b.logger.Info("configured", "endpoints", endpoints, "from", from, "prefix", b.prefix,
		"member", req.Member, "ttl", ttl, "auth", user != "")
	return nil
}

// ttlSeconds rounds a TTL up to whole seconds, etcd's lease unit.
func ttlSeconds(ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("ttl %v is not positive", ttl)
	}
	return int64((ttl + time.Second - 1) / time.Second), nil
}

// SetTTL changes the lease TTL. A lease keeps the TTL it was granted with,
// so a new one is granted at the next write or renewal and the member's keys
// move onto it (the leader key is rewritten by RenewLeader because its lease
// differs), as Patroni does. The old lease is left to expire.
func (b *Backend) SetTTL(_ context.Context, ttl time.Duration) error {
	secs, err := ttlSeconds(ttl)
	if err != nil {
		return fmt.Errorf("setting ttl: %w", err)
	}
	b.mu.Lock()
	changed := b.ttl != secs
	b.ttl = secs
	b.mu.Unlock()
	if changed {
		b.leaseMu.Lock()
		b.lease = 0
		b.leaseMu.Unlock()
		b.logger.Info("ttl changed; a new lease will be granted", "ttl", secs)
	}
	return nil
}

// Close stops the watch cache, which ends open watches, and closes the etcd
// client. It does not revoke the lease: like Patroni, custos leaves the
// member key (and a leader key not released with DeleteLeader) to expire one
// TTL later, so that a restarting agent or plugin can still renew what it
// holds.
func (b *Backend) Close(_ context.Context) error {
	b.mu.Lock()
	client, c := b.client, b.cache
	b.client = nil
	b.cache = nil
	b.closed = true
	b.mu.Unlock()
	if client == nil {
		return nil
	}
	c.close()
	if err := client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("closing the etcd client: %w", err)
	}
	return nil
}

// state is what one operation needs, read once under the lock.
type state struct {
	client       *clientv3.Client
	cache        *cache
	prefix       string
	member       string
	ttl          int64
	retryTimeout time.Duration
	attempt      time.Duration
}

func (s state) key(rel string) string { return s.prefix + rel }

// errNotConfigured and errClosed are returned by operations on a backend
// that has no client.
var (
	errNotConfigured = fmt.Errorf("etcd3 backend not configured: %w", dcs.ErrUnavailable)
	errClosed        = fmt.Errorf("etcd3 backend closed: %w", dcs.ErrUnavailable)
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
	return state{client: b.client, cache: b.cache, prefix: b.prefix, member: b.member, ttl: b.ttl, retryTimeout: b.retryTimeout, attempt: b.attempt}, nil
}

// saw records a revision etcd answered a request with.
func (b *Backend) saw(rev int64) {
	b.mu.Lock()
	b.seen = max(b.seen, rev)
	b.failing = false
	b.mu.Unlock()
}

// seenRev is the newest revision this backend has written or read, and
// whether the last request failed.
func (b *Backend) seenRev() (rev int64, failing bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen, b.failing
}

// retry runs one request of an operation attempt by attempt (see retry).
func (s state) retry(ctx context.Context, fn func(ctx context.Context, again bool) error) error {
	return retry(ctx, s.attempt, fn)
}

// opContext bounds one operation by the retry timeout; its requests are
// tried, attempt by attempt, within it (see retry).
func (s state) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.retryTimeout > 0 {
		return context.WithTimeout(ctx, s.retryTimeout)
	}
	return context.WithCancel(ctx)
}

// storeErr turns an error from etcd into the contract's: the caller's own
// cancellation stays a context error; everything else (unreachable,
// timed out, no leader, refused) means the store is in trouble. The etcd
// error is kept in the message but not in the chain: its gRPC status must
// not travel to the host as if it were one of the contract's codes.
func (b *Backend) storeErr(ctx context.Context, op string, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	b.mu.Lock()
	b.failing = true
	b.mu.Unlock()
	return fmt.Errorf("%s: %w: %v", op, dcs.ErrUnavailable, err)
}

// withLease runs fn with this member's lease: granted if there is none,
// refreshed as refresh says, granted anew if etcd no longer knows it. fn
// gets the revision of the keep-alive or grant, 0 when none was sent. When
// fn itself finds the lease gone (it expired or was revoked while not
// refreshed), it runs once more with a new one.
func (b *Backend) withLease(ctx context.Context, s state, refresh refreshPolicy, fn func(id clientv3.LeaseID, rev int64) error) error {
	for attempt := 0; ; attempt++ {
		id, rev, err := b.keepAlive(ctx, s, refresh)
		if err != nil {
			return err
		}
		err = fn(id, rev)
		if attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			b.dropLease(id)
			continue
		}
		return err
	}
}

// refreshPolicy says when an operation keeps the lease alive.
type refreshPolicy int

const (
	// refreshAlways sends a keep-alive every time: the leader key's
	// operations, whose callers count the key's lifetime from their return.
	refreshAlways refreshPolicy = iota
	// refreshWhenAged sends one only when the last refresh is older than
	// ttl/memberRefreshDivisor: TouchMember.
	refreshWhenAged
)

// keepAlive refreshes the lease once, or grants one, as the policy says. It
// returns the lease and the revision etcd answered the refresh with (0 when
// none was needed).
func (b *Backend) keepAlive(ctx context.Context, s state, refresh refreshPolicy) (clientv3.LeaseID, int64, error) {
	b.leaseMu.Lock()
	defer b.leaseMu.Unlock()
	if b.lease != 0 && refresh == refreshWhenAged &&
		time.Since(b.refreshed) < time.Duration(s.ttl)*time.Second/memberRefreshDivisor {
		return b.lease, 0, nil
	}
	if b.lease != 0 {
		var sent time.Time
		var resp *clientv3.LeaseKeepAliveResponse
		err := s.retry(ctx, func(ctx context.Context, _ bool) error {
			sent = time.Now()
			var err error
			resp, err = s.client.KeepAliveOnce(ctx, b.lease)
			return err
		})
		if err == nil {
			b.refreshed = sent
			b.saw(resp.Revision)
			return b.lease, resp.Revision, nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, 0, fmt.Errorf("keeping lease %x alive: %w", int64(b.lease), err)
		}
		b.logger.Warn("lease expired; granting a new one", "lease", leaseString(b.lease))
		b.lease = 0
	}
	// A grant whose attempt timed out may have landed: that lease then
	// expires one TTL later, unused.
	var sent time.Time
	var resp *clientv3.LeaseGrantResponse
	err := s.retry(ctx, func(ctx context.Context, _ bool) error {
		sent = time.Now()
		var err error
		resp, err = s.client.Grant(ctx, s.ttl)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("granting a lease: %w", err)
	}
	b.lease = resp.ID
	b.refreshed = sent
	b.saw(resp.Revision)
	b.logger.Debug("lease granted", "lease", leaseString(resp.ID), "ttl", resp.TTL)
	return resp.ID, resp.Revision, nil
}

func (b *Backend) dropLease(id clientv3.LeaseID) {
	b.leaseMu.Lock()
	defer b.leaseMu.Unlock()
	if b.lease == id {
		b.lease = 0
	}
}

// leaseString renders a lease ID as Patroni shows it (decimal).
func leaseString(id clientv3.LeaseID) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(int64(id), 10)
}

func revString(rev int64) string { return strconv.FormatInt(rev, 10) }

// parseVersion reads a version handed back by the host.
func parseVersion(version string) (int64, error) {
	rev, err := strconv.ParseInt(version, 10, 64)
	if err != nil || rev <= 0 {
		return 0, fmt.Errorf("version %q is not an etcd mod_revision: %w", version, dcs.ErrVersionMismatch)
	}
	return rev, nil
}
