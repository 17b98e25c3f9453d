package zookeeper

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// maxPacketBytes bounds one packet to or from the server. The contract
// promises 1 MiB values; a request carrying one is a little larger, so the
// server's jute.maxbuffer (default 1 MiB - 1) must be raised as well, e.g.
// -Djute.maxbuffer=4194304. 4 MiB leaves room for a cluster read that lists
// many children.
const maxPacketBytes = 4 << 20

// session is one ZooKeeper session and its connection. It ends for good
// when the server expires it, when its renewal deadline passes (the plugin
// closes it itself so that its ephemeral znodes go at once), or when the
// backend closes it; the backend then opens a new one for the next call.
type session struct {
	conn   *zk.Conn
	events <-chan zk.Event
	logger hclog.Logger
	auth   []Credential

	mu       sync.Mutex
	state    zk.State
	stateCh  chan struct{} // closed and replaced on every state change
	ready    bool          // connected and credentials added
	id       int64
	lost     bool
	lostErr  error
	lostCh   chan struct{}
	subs     map[*subscriber]struct{}
	deadline time.Time // zero until the first renewal
	timer    *time.Timer

	// ops counts client calls still running in the background.
	ops  sync.WaitGroup
	done chan struct{}
}

// errNoSession marks errors that mean "this session is gone or could not
// be used"; reads retry them on a new session.
var errNoSession = fmt.Errorf("no usable zookeeper session: %w", dcs.ErrUnavailable)

// dialSession starts a session; it is usable once waitReady returns.
func dialSession(cfg *Config, tlsConf *tls.Config, timeout time.Duration, logger hclog.Logger) (*session, error) {
	s := &session{
		logger:  logger,
		auth:    cfg.Auth,
		stateCh: make(chan struct{}),
		lostCh:  make(chan struct{}),
		subs:    map[*subscriber]struct{}{},
		timer:   time.NewTimer(time.Hour),
		done:    make(chan struct{}),
	}
	s.timer.Stop()
	conn, events, err := zk.Connect(cfg.Hosts, timeout,
		zk.WithHostProvider(&hostRing{}),
		zk.WithDialer(dialer(tlsConf)),
		zk.WithLogger(zkLogger{logger.Named("client")}),
		zk.WithLogInfo(false),
		zk.WithEventCallback(s.onEvent),
		zk.WithMaxBufferSize(maxPacketBytes),
		zk.WithMaxConnBufferSize(maxPacketBytes),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to %v: %v: %w", cfg.Hosts, err, dcs.ErrUnavailable)
	}
	s.conn, s.events = conn, events
	go s.run()
	return s, nil
}

// onEvent receives every event of the connection, on the client's own
// goroutines: it must not block and must not call the client.
func (s *session) onEvent(ev zk.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Type != zk.EventSession {
		for sub := range s.subs {
			sub.push(ev)
		}
		return
	}
	s.state = ev.State
	close(s.stateCh)
	s.stateCh = make(chan struct{})
	switch ev.State {
	case zk.StateExpired:
		s.failLocked(fmt.Errorf("zookeeper session 0x%x expired on the server: %w", s.id, errNoSession))
	case zk.StateAuthFailed:
		s.failLocked(fmt.Errorf("zookeeper rejected the credentials of session 0x%x: %w", s.id, errNoSession))
	case zk.StateDisconnected:
		if s.ready && !s.lost {
			s.logger.Debug("disconnected from zookeeper, reconnecting", "session", sessionHex(s.id))
		}
	}
}

// run owns the session: it adds the credentials once connected, closes the
// session when its renewal deadline passes, and tears it down once lost.
func (s *session) run() {
	defer close(s.done)
	s.establish()
	for {
		select {
		case <-s.timer.C:
			s.mu.Lock()
			switch {
			case s.deadline.IsZero():
			case time.Now().Before(s.deadline):
				s.timer.Reset(time.Until(s.deadline))
			default:
				s.logger.Warn("ttl passed without renewal: closing the session so that its leader and member znodes go", "session", sessionHex(s.id))
				s.failLocked(fmt.Errorf("zookeeper session 0x%x closed: ttl passed without renewal: %w", s.id, errNoSession))
			}
			s.mu.Unlock()
		case <-s.lostCh:
			// Close sends closeSession when connected, so the server drops the
			// ephemeral znodes now instead of after the session timeout.
			s.conn.Close()
			for range s.events {
				// The channel closes when the client's goroutines are done.
			}
			s.ops.Wait()
			s.timer.Stop()
			return
		}
	}
}

// establish waits for the first connection and adds the credentials.
func (s *session) establish() {
	for {
		s.mu.Lock()
		state, ch, lost := s.state, s.stateCh, s.lost
		s.mu.Unlock()
		if lost {
			return
		}
		if state == zk.StateHasSession {
			break
		}
		select {
		case <-ch:
		case <-s.lostCh:
			return
		}
	}
	id := s.conn.SessionID()
	for _, c := range s.auth {
		// On a goroutine of its own, so that losing the session meanwhile
		// goes on to the teardown, which ends the call.
		res := make(chan error, 1)
		s.ops.Add(1)
		go func() {
			defer s.ops.Done()
			res <- s.conn.AddAuth(c.Scheme, []byte(c.Secret))
		}()
		select {
		case err := <-res:
			if err != nil {
				s.fail(fmt.Errorf("adding the %s credentials to zookeeper session 0x%x: %v: %w", c.Scheme, id, err, errNoSession))
				return
			}
		case <-s.lostCh:
			return
		}
	}
	s.mu.Lock()
	s.id = id
	s.ready = true
	close(s.stateCh)
	s.stateCh = make(chan struct{})
	s.mu.Unlock()
	s.logger.Debug("zookeeper session established", "session", sessionHex(id), "server", s.conn.Server())
}

// fail ends the session for good with err.
func (s *session) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

func (s *session) failLocked(err error) {
	if s.lost {
		return
	}
	s.lost, s.lostErr = true, err
	close(s.lostCh)
}

// isLost reports whether the session has ended.
func (s *session) isLost() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// lostError returns why the session ended, nil while it lives.
func (s *session) lostError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostErr
}

// sessionID returns the server's id of the session (0 before it is ready).
func (s *session) sessionID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// extend pushes the renewal deadline to now+ttl. It returns false when the
// session has already ended, or when its deadline passed and the timer has
// not closed it yet: a late renewal never revives a session whose keys
// should be gone.
func (s *session) extend(ttl time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.lost && !s.deadline.IsZero() && !now.Before(s.deadline) {
		s.logger.Warn("renewal came after the ttl passed: closing the session so that its leader and member znodes go", "session", sessionHex(s.id))
		s.failLocked(fmt.Errorf("zookeeper session 0x%x closed: ttl passed without renewal: %w", s.id, errNoSession))
	}
	if s.lost {
		return false
	}
	s.deadline = now.Add(ttl)
	s.timer.Reset(ttl)
	return true
}

// waitReady waits until the session is connected with its credentials.
func (s *session) waitReady(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.lost {
			err := s.lostErr
			s.mu.Unlock()
			return err
		}
		if s.ready && s.state == zk.StateHasSession {
			s.mu.Unlock()
			return nil
		}
		ch := s.stateCh
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.lostCh:
		case <-ctx.Done():
			return fmt.Errorf("waiting for a zookeeper session: %w", ctxErr(ctx))
		}
	}
}

// do runs one blocking client call. The caller gets control back as soon
// as ctx is done or the session ends; the call itself then finishes in the
// background, and the session waits for it before it is torn down.
func do[T any](ctx context.Context, s *session, fn func(c *zk.Conn) (T, error)) (T, error) {
	var zero T
	if err := s.waitReady(ctx); err != nil {
		return zero, err
	}
	s.mu.Lock()
	if s.lost {
		err := s.lostErr
		s.mu.Unlock()
		return zero, err
	}
	s.ops.Add(1)
	s.mu.Unlock()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer s.ops.Done()
		v, err := fn(s.conn)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-s.lostCh:
		s.mu.Lock()
		defer s.mu.Unlock()
		return zero, s.lostErr
	case <-ctx.Done():
		return zero, ctxErr(ctx)
	}
}

// ctxErr is the reason ctx ended: the retry_timeout cause (which wraps
// dcs.ErrUnavailable) or the caller's own cancellation.
func ctxErr(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return ctx.Err()
}

// subscriber queues the node events of a session for one Watch call.
type subscriber struct {
	mu    sync.Mutex
	queue []zk.Event
	wake  chan struct{}
}

func (s *session) subscribe() *subscriber {
	sub := &subscriber{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

func (s *session) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

func (sub *subscriber) push(ev zk.Event) {
	sub.mu.Lock()
	sub.queue = append(sub.queue, ev)
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber) take() []zk.Event {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	q := sub.queue
	sub.queue = nil
	return q
}

// sessionHex renders a session id the way ZooKeeper's own logs do.
func sessionHex(id int64) string { return fmt.Sprintf("0x%x", uint64(id)) }

// dialer connects to one server, with TLS when configured. The server name
// for certificate checks is the host as configured (hostRing does not
// resolve names).
func dialer(tlsConf *tls.Config) zk.Dialer {
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout}
		if tlsConf == nil {
			return d.Dial(network, address)
		}
		conf := tlsConf.Clone()
		if conf.ServerName == "" {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			conf.ServerName = host
		}
		return tls.DialWithDialer(d, network, address, conf)
	}
}

// hostRing hands out the configured servers in turn. Unlike the client's
// default provider it does not resolve names once at start: every dial
// resolves afresh, and TLS sees the configured host name.
type hostRing struct {
	mu      sync.Mutex
	servers []string
	curr    int
	last    int
}

// Init implements zk.HostProvider.
func (h *hostRing) Init(servers []string) error {
	if len(servers) == 0 {
		return errors.New("no zookeeper servers")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = append([]string(nil), servers...)
	rand.Shuffle(len(h.servers), func(i, j int) { h.servers[i], h.servers[j] = h.servers[j], h.servers[i] })
	h.curr, h.last = -1, -1
	return nil
}

// Len implements zk.HostProvider.
func (h *hostRing) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.servers)
}

// Next implements zk.HostProvider: retryStart is true once every server was
// tried since the last successful connection.
func (h *hostRing) Next() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.curr = (h.curr + 1) % len(h.servers)
	retryStart := h.curr == h.last
	if h.last == -1 {
		h.last = 0
	}
	return h.servers[h.curr], retryStart
}

// Connected implements zk.HostProvider.
func (h *hostRing) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = h.curr
}

// zkLogger routes the client library's log lines to hclog.
type zkLogger struct{ l hclog.Logger }

// Printf implements zk.Logger.
func (z zkLogger) Printf(format string, args ...any) { z.l.Info(fmt.Sprintf(format, args...)) }
