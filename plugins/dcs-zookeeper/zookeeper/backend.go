package zookeeper

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Timing defaults.
const (
	// defaultRetryTimeout bounds one operation when the host gives no
	// retry_timeout; it is Patroni's default.
	defaultRetryTimeout = 10 * time.Second
	// retryPause is the wait between two attempts of a read whose session
	// broke: short, since a new session usually connects at once.
	retryPause = 50 * time.Millisecond
	// maxAttempts bounds the read-check-write loops that start over when
	// another client changed the key in between.
	maxAttempts = 10
)

var (
	errClosed        = fmt.Errorf("zookeeper backend closed: %w", dcs.ErrUnavailable)
	errNotConfigured = fmt.Errorf("zookeeper backend not configured: %w", dcs.ErrUnavailable)
)

// Backend is the ZooKeeper implementation of dcs.Backend. Its zero value is
// not usable; call New.
type Backend struct {
	logger hclog.Logger

	mu      sync.Mutex
	cfg     *Config
	tlsConf *tls.Config
	prefix  string // "/<namespace>/<scope>", no trailing slash
	member  string
	ttl     time.Duration
	retry   time.Duration
	sess    *session   // the current session, nil until needed
	all     []*session // sessions not yet torn down, for Close
	closed  bool
	// lastMember remembers the member znode as last written, to skip a
	// write (and the watch events it causes) when nothing changed.
	lastMember memberWrite
}

// memberWrite is a member znode as this backend last wrote it.
type memberWrite struct {
	session int64
	version int32
	data    []byte
}

// New returns an unconfigured backend logging to logger.
func New(logger hclog.Logger) *Backend {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Backend{logger: logger}
}

var _ dcs.Backend = (*Backend)(nil)

// Validate implements dcs.Backend. It checks the section's shape only: it
// neither connects nor reads the certificate files.
func (b *Backend) Validate(_ context.Context, config []byte) error {
	_, err := parseConfig(config)
	return err
}

// Configure implements dcs.Backend: it binds the backend and opens the first
// session. When ZooKeeper cannot be reached it returns an error wrapping
// dcs.ErrUnavailable but stays bound, so later calls connect once it is up.
func (b *Backend) Configure(ctx context.Context, req dcs.ConfigureRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	errs := &sdk.ConfigError{}
	tlsConf, err := cfg.tlsConfig()
	if err != nil {
		var ce *sdk.ConfigError
		if errors.As(err, &ce) {
			errs.Problems = append(errs.Problems, ce.Problems...)
		} else {
			errs.Add("", "%v", err)
		}
	}
	prefix := strings.TrimSuffix(dcs.Prefix(req.Namespace, req.Scope), "/")
	switch {
	case req.Scope == "":
		errs.Add("scope", "must not be empty")
	case !validZnodePath(prefix):
		errs.Add("scope", "namespace and scope make %q, which is not a valid znode path", prefix)
	}
	switch {
	case req.Member == "":
		errs.Add("name", "must not be empty")
	case strings.Contains(req.Member, "/") || !validZnodePath("/"+req.Member):
		errs.Add("name", "%q is not a valid znode name", req.Member)
	}
	if req.TTL <= 0 {
		errs.Add("ttl", "must be positive")
	}
	if err := errs.OrNil(); err != nil {
		return err
	}
	retry := req.RetryTimeout
	if retry <= 0 {
		retry = defaultRetryTimeout
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errClosed
	}
	old := b.sess
	b.cfg, b.tlsConf = cfg, tlsConf
	b.prefix, b.member, b.ttl, b.retry = prefix, req.Member, req.TTL, retry
	b.sess = nil
	b.lastMember = memberWrite{}
	b.mu.Unlock()
	if old != nil {
		old.fail(fmt.Errorf("zookeeper backend reconfigured: %w", errNoSession))
	}

	ctx, cancel := b.begin(ctx)
	defer cancel()
	if _, err := b.session(ctx); err != nil {
		return fmt.Errorf("connecting to zookeeper %s: %w", strings.Join(cfg.Hosts, ","), mapErr(err))
	}
	b.logger.Debug("configured", "prefix", prefix, "member", req.Member, "ttl", req.TTL)
	return nil
}

// SetTTL implements dcs.Backend. The renewal deadline follows the new TTL
// from the next renewal on; the server-side session timeout (which only
// matters once this process is gone) changes with the next session, since
// ZooKeeper cannot change it on a live session.
func (b *Backend) SetTTL(_ context.Context, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("setting ttl %v: must be positive", ttl)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ttl != ttl {
		b.logger.Info("ttl changed", "ttl", ttl, "previous", b.ttl)
	}
	b.ttl = ttl
	return nil
}

// Close implements dcs.Backend: it closes every session (the server deletes
// their ephemeral znodes at once) and waits for them to be torn down.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	all := b.all
	b.all, b.sess = nil, nil
	b.mu.Unlock()
	for _, s := range all {
		s.fail(errClosed)
	}
	for _, s := range all {
		select {
		case <-s.done:
		case <-ctx.Done():
			return fmt.Errorf("closing zookeeper sessions: %w", ctx.Err())
		}
	}
	return nil
}

// begin bounds one operation by the retry timeout.
func (b *Backend) begin(ctx context.Context) (context.Context, context.CancelFunc) {
	b.mu.Lock()
	retry := b.retry
	b.mu.Unlock()
	if retry <= 0 {
		retry = defaultRetryTimeout
	}
	return context.WithTimeoutCause(ctx, retry,
		fmt.Errorf("no answer from zookeeper within retry_timeout %v: %w", retry, dcs.ErrUnavailable))
}

// session returns the live session, opening a new one when there is none
// or the last one ended, and waits until it is usable.
func (b *Backend) session(ctx context.Context) (*session, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errClosed
	}
	if b.cfg == nil {
		b.mu.Unlock()
		return nil, errNotConfigured
	}
	s := b.sess
	if s == nil || s.isLost() {
		var err error
		s, err = dialSession(b.cfg, b.tlsConf, b.ttl, b.logger)
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		b.sess = s
		live := b.all[:0]
		for _, old := range b.all {
			select {
			case <-old.done:
			default:
				live = append(live, old)
			}
		}
		b.all = append(live, s)
	}
	b.mu.Unlock()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ownerSession returns the live session after pushing its renewal
// deadline: the leader and member znodes of this member live on it.
func (b *Backend) ownerSession(ctx context.Context) (*session, error) {
	for {
		s, err := b.session(ctx)
		if err != nil {
			return nil, err
		}
		if s.extend(b.currentTTL()) {
			return s, nil
		}
	}
}

func (b *Backend) currentTTL() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ttl
}

// read runs fn on a live session, and again on a new one when the session
// breaks, until ctx ends. Only idempotent work goes through read.
func (b *Backend) read(ctx context.Context, fn func(s *session) error) error {
	for {
		s, err := b.session(ctx)
		if err == nil {
			err = fn(s)
		}
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctxErr(ctx), err)
		case <-time.After(retryPause):
		}
	}
}

// retryable reports whether err means the session or connection broke, so
// that a read may start over.
func retryable(err error) bool {
	for _, e := range []error{errNoSession, zk.ErrConnectionClosed, zk.ErrNoServer, zk.ErrSessionExpired, zk.ErrClosing, zk.ErrSessionMoved} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// mapErr makes connection-level client errors wrap dcs.ErrUnavailable.
func mapErr(err error) error {
	if err == nil || errors.Is(err, dcs.ErrUnavailable) {
		return err
	}
	for _, e := range []error{zk.ErrConnectionClosed, zk.ErrNoServer, zk.ErrSessionExpired, zk.ErrClosing, zk.ErrSessionMoved, zk.ErrAuthFailed} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", err, dcs.ErrUnavailable)
		}
	}
	return err
}

// Paths.

func (b *Backend) paths() (prefix, member string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.prefix, b.member
}

func (b *Backend) leaderPath() string {
	prefix, _ := b.paths()
	return prefix + "/" + dcs.LeaderPath
}

func (b *Backend) memberPath() string {
	prefix, member := b.paths()
	return prefix + "/" + dcs.MembersPath + member
}

func (b *Backend) keyPath(key dcs.Key) (string, error) {
	for _, k := range dcs.Keys {
		if k == key {
			prefix, _ := b.paths()
			return prefix + "/" + string(key), nil
		}
	}
	return "", fmt.Errorf("unknown cluster key %q", key)
}

func (b *Backend) acl() []zk.ACL {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg != nil && len(b.cfg.ACL) > 0 {
		return b.cfg.ACL
	}
	return zk.WorldACL(zk.PermAll)
}

// validZnodePath reports whether p is a path ZooKeeper accepts: absolute,
// no empty, "." or ".." segment, no control or reserved characters.
func validZnodePath(p string) bool {
	if !strings.HasPrefix(p, "/") || p == "/" || strings.HasSuffix(p, "/") || !utf8.ValidString(p) {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, r := range seg {
			switch {
			case r <= 0x1f, r >= 0x7f && r <= 0x9f, r >= 0xf000 && r <= 0xf8ff, r >= 0xfff0 && r <= 0xffff:
				return false
			}
		}
	}
	return true
}

// Client calls with their results; each returns promptly when ctx ends.

type node struct {
	data []byte
	stat *zk.Stat
}

func getNode(ctx context.Context, s *session, path string) (node, error) {
	return do(ctx, s, func(c *zk.Conn) (node, error) {
		data, stat, err := c.Get(path)
		return node{data, stat}, err
	})
}

func setNode(ctx context.Context, s *session, path string, data []byte, version int32) (*zk.Stat, error) {
	return do(ctx, s, func(c *zk.Conn) (*zk.Stat, error) { return c.Set(path, data, version) })
}

func deleteNode(ctx context.Context, s *session, path string, version int32) error {
	_, err := do(ctx, s, func(c *zk.Conn) (struct{}, error) { return struct{}{}, c.Delete(path, version) })
	return err
}

// replace deletes path at version and creates it again with data and flags
// in one transaction: a leader or member znode moves to this session
// without a moment in which it is absent.
func (b *Backend) replace(ctx context.Context, s *session, path string, version int32, data []byte, flags int32) error {
	acl := b.acl()
	_, err := do(ctx, s, func(c *zk.Conn) (struct{}, error) {
		_, err := c.Multi(
			&zk.DeleteRequest{Path: path, Version: version},
			&zk.CreateRequest{Path: path, Data: data, Acl: acl, Flags: flags},
		)
		return struct{}{}, err
	})
	return err
}

// create creates path, and its missing parents as empty persistent znodes.
func (b *Backend) create(ctx context.Context, s *session, path string, data []byte, flags int32) error {
	acl := b.acl()
	for {
		_, err := do(ctx, s, func(c *zk.Conn) (string, error) { return c.Create(path, data, flags, acl) })
		if !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		for i := 1; i < len(path); i++ {
			if path[i] != '/' {
				continue
			}
			parent := path[:i]
			_, err := do(ctx, s, func(c *zk.Conn) (string, error) { return c.Create(parent, nil, zk.FlagPersistent, acl) })
			if err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("creating parent %s: %w", parent, err)
			}
		}
	}
}

// changedUnderfoot reports errors of a conditional write that lost against
// another client; the caller reads again and starts over.
func changedUnderfoot(err error) bool {
	return errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists)
}

// AcquireLeader implements dcs.Backend: create-only of the ephemeral leader
// znode on this member's session.
func (b *Backend) AcquireLeader(ctx context.Context) (string, error) {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path := b.leaderPath()
	s, err := b.ownerSession(ctx)
	if err != nil {
		return "", fmt.Errorf("acquiring leader key %s: %w", path, mapErr(err))
	}
	_, member := b.paths()
	switch err := b.create(ctx, s, path, []byte(member), zk.FlagEphemeral); {
	case err == nil:
		return "0", nil // a new znode is at version 0
	case errors.Is(err, zk.ErrNodeExists):
		return "", fmt.Errorf("acquiring leader key %s: %w", path, dcs.ErrExists)
	default:
		return "", fmt.Errorf("acquiring leader key %s: %w", path, mapErr(err))
	}
}

// RenewLeader implements dcs.Backend. Holding the key on this session, it
// only pushes the renewal deadline. Holding it on another session (a
// previous process of this member), it moves the znode to this session in
// one transaction. A missing key is created again.
func (b *Backend) RenewLeader(ctx context.Context) error {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path := b.leaderPath()
	_, member := b.paths()
	s, err := b.ownerSession(ctx)
	if err != nil {
		return fmt.Errorf("renewing leader key %s: %w", path, mapErr(err))
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		n, err := getNode(ctx, s, path)
		if errors.Is(err, zk.ErrNoNode) {
			err = b.create(ctx, s, path, []byte(member), zk.FlagEphemeral)
			if errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("renewing leader key %s: it was gone and another member took it: %w", path, dcs.ErrExists)
			}
			if err != nil {
				return fmt.Errorf("renewing leader key %s: creating it again: %w", path, mapErr(err))
			}
			b.logger.Info("leader key was gone: created it again", "member", member)
			return nil
		}
		if err != nil {
			return fmt.Errorf("renewing leader key %s: %w", path, mapErr(err))
		}
		if string(n.data) != member {
			return fmt.Errorf("renewing leader key %s: it holds %q: %w", path, n.data, dcs.ErrVersionMismatch)
		}
		if n.stat.EphemeralOwner == s.sessionID() {
			return nil
		}
		err = b.replace(ctx, s, path, n.stat.Version, []byte(member), zk.FlagEphemeral)
		if err == nil {
			b.logger.Info("leader key held by another session of this member: moved it to this session",
				"member", member, "old_session", sessionHex(n.stat.EphemeralOwner), "session", sessionHex(s.sessionID()))
			return nil
		}
		if !changedUnderfoot(err) {
			return fmt.Errorf("renewing leader key %s: moving it to this session: %w", path, mapErr(err))
		}
	}
	return fmt.Errorf("renewing leader key %s: it kept changing: %w", path, dcs.ErrVersionMismatch)
}

// TakeLeader implements dcs.Backend: whatever holds the key is replaced by
// this member on this session, in one transaction.
func (b *Backend) TakeLeader(ctx context.Context) error {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path := b.leaderPath()
	_, member := b.paths()
	s, err := b.ownerSession(ctx)
	if err != nil {
		return fmt.Errorf("taking leader key %s: %w", path, mapErr(err))
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		n, err := getNode(ctx, s, path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			err = b.create(ctx, s, path, []byte(member), zk.FlagEphemeral)
		case err != nil:
			return fmt.Errorf("taking leader key %s: %w", path, mapErr(err))
		case string(n.data) == member && n.stat.EphemeralOwner == s.sessionID():
			return nil
		default:
			err = b.replace(ctx, s, path, n.stat.Version, []byte(member), zk.FlagEphemeral)
		}
		if err == nil {
			return nil
		}
		if !changedUnderfoot(err) {
			return fmt.Errorf("taking leader key %s: %w", path, mapErr(err))
		}
	}
	return fmt.Errorf("taking leader key %s: it kept changing: %w", path, dcs.ErrVersionMismatch)
}

// DeleteLeader implements dcs.Backend: the znode is deleted at the version
// read with this member's name.
func (b *Backend) DeleteLeader(ctx context.Context) error {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path := b.leaderPath()
	_, member := b.paths()
	s, err := b.session(ctx)
	if err != nil {
		return fmt.Errorf("deleting leader key %s: %w", path, mapErr(err))
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		n, err := getNode(ctx, s, path)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("deleting leader key %s: %w", path, mapErr(err))
		}
		if string(n.data) != member {
			return fmt.Errorf("deleting leader key %s: it holds %q: %w", path, n.data, dcs.ErrVersionMismatch)
		}
		err = deleteNode(ctx, s, path, n.stat.Version)
		if err == nil || errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if !errors.Is(err, zk.ErrBadVersion) {
			return fmt.Errorf("deleting leader key %s: %w", path, mapErr(err))
		}
	}
	return fmt.Errorf("deleting leader key %s: it kept changing: %w", path, dcs.ErrVersionMismatch)
}

// TouchMember implements dcs.Backend. The member znode is ephemeral on this
// session; one left by a previous session of this member is moved over. A
// write of unchanged data is skipped after a cheap check, so that watchers
// are not woken for nothing (Patroni writes its member key only on change
// as well); the renewal deadline is pushed either way.
func (b *Backend) TouchMember(ctx context.Context, data []byte) error {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path := b.memberPath()
	s, err := b.ownerSession(ctx)
	if err != nil {
		return fmt.Errorf("touching member key %s: %w", path, mapErr(err))
	}
	id := s.sessionID()
	b.mu.Lock()
	last := b.lastMember
	b.mu.Unlock()
	if last.session == id && bytes.Equal(last.data, data) {
		st, err := do(ctx, s, func(c *zk.Conn) (*zk.Stat, error) {
			_, st, err := c.Exists(path)
			return st, err
		})
		if err != nil {
			return fmt.Errorf("touching member key %s: %w", path, mapErr(err))
		}
		if st.EphemeralOwner == id && st.Version == last.version {
			return nil
		}
	}
	version, err := b.writeMember(ctx, s, path, data)
	if err != nil {
		b.mu.Lock()
		b.lastMember = memberWrite{}
		b.mu.Unlock()
		return fmt.Errorf("touching member key %s: %w", path, mapErr(err))
	}
	b.mu.Lock()
	b.lastMember = memberWrite{session: id, version: version, data: append([]byte(nil), data...)}
	b.mu.Unlock()
	return nil
}

// writeMember writes the member znode on s and returns its new version.
func (b *Backend) writeMember(ctx context.Context, s *session, path string, data []byte) (int32, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		st, err := setNode(ctx, s, path, data, -1)
		switch {
		case err == nil && st.EphemeralOwner == s.sessionID():
			return st.Version, nil
		case err == nil:
			// Left by a previous session of this member (a restarted plugin):
			// it would vanish with that session, so move it to this one.
			err = b.replace(ctx, s, path, st.Version, data, zk.FlagEphemeral)
			if err == nil {
				b.logger.Info("member key held by another session of this member: moved it to this session",
					"old_session", sessionHex(st.EphemeralOwner), "session", sessionHex(s.sessionID()))
				return 0, nil
			}
		case errors.Is(err, zk.ErrNoNode):
			err = b.create(ctx, s, path, data, zk.FlagEphemeral)
			if err == nil {
				return 0, nil
			}
		}
		if !changedUnderfoot(err) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("it kept changing: %w", dcs.ErrVersionMismatch)
}

// parseVersion reads a version given back by the host. Negative numbers
// are refused: -1 means "any version" to ZooKeeper.
func parseVersion(v string) (int32, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("version %q is not a znode version: %w", v, dcs.ErrVersionMismatch)
	}
	return int32(n), nil
}

// CompareAndSet implements dcs.Backend on the znode version.
func (b *Backend) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path, err := b.keyPath(key)
	if err != nil {
		return "", err
	}
	s, err := b.session(ctx)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, mapErr(err))
	}
	if version == "" {
		err := b.create(ctx, s, path, data, zk.FlagPersistent)
		switch {
		case err == nil:
			return "0", nil
		case errors.Is(err, zk.ErrNodeExists):
			return "", fmt.Errorf("creating %s: %w", path, dcs.ErrExists)
		default:
			return "", fmt.Errorf("creating %s: %w", path, mapErr(err))
		}
	}
	v, err := parseVersion(version)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	st, err := setNode(ctx, s, path, data, v)
	switch {
	case err == nil:
		return strconv.Itoa(int(st.Version)), nil
	case errors.Is(err, zk.ErrBadVersion):
		return "", fmt.Errorf("writing %s at version %s: %w", path, version, dcs.ErrVersionMismatch)
	case errors.Is(err, zk.ErrNoNode):
		return "", fmt.Errorf("writing %s at version %s: %w", path, version, dcs.ErrNotFound)
	default:
		return "", fmt.Errorf("writing %s: %w", path, mapErr(err))
	}
}

// CompareAndDelete implements dcs.Backend on the znode version. (Patroni's
// ZooKeeper code writes "{}" to sync instead of deleting it; the custos
// contract deletes the key, which Patroni reads as "no sync state" too.)
func (b *Backend) CompareAndDelete(ctx context.Context, key dcs.Key, version string) error {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path, err := b.keyPath(key)
	if err != nil {
		return err
	}
	v := int32(-1)
	if version != "" {
		if v, err = parseVersion(version); err != nil {
			return fmt.Errorf("deleting %s: %w", path, err)
		}
	}
	s, err := b.session(ctx)
	if err != nil {
		return fmt.Errorf("deleting %s: %w", path, mapErr(err))
	}
	err = deleteNode(ctx, s, path, v)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zk.ErrNoNode) && version == "":
		return nil
	case errors.Is(err, zk.ErrNoNode):
		return fmt.Errorf("deleting %s at version %s: %w", path, version, dcs.ErrNotFound)
	case errors.Is(err, zk.ErrBadVersion):
		return fmt.Errorf("deleting %s at version %s: %w", path, version, dcs.ErrVersionMismatch)
	default:
		return fmt.Errorf("deleting %s: %w", path, mapErr(err))
	}
}

// Set implements dcs.Backend: set, or create when absent.
func (b *Backend) Set(ctx context.Context, key dcs.Key, data []byte) error {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	path, err := b.keyPath(key)
	if err != nil {
		return err
	}
	s, err := b.session(ctx)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, mapErr(err))
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		_, err := setNode(ctx, s, path, data, -1)
		if errors.Is(err, zk.ErrNoNode) {
			err = b.create(ctx, s, path, data, zk.FlagPersistent)
			if errors.Is(err, zk.ErrNodeExists) {
				continue // created by another client in between: overwrite it
			}
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", path, mapErr(err))
		}
		return nil
	}
	return fmt.Errorf("writing %s: it kept appearing and disappearing: %w", path, dcs.ErrUnavailable)
}

// DeleteCluster implements dcs.Backend: the prefix znode and everything
// under it go, as with Patroni's recursive delete.
func (b *Backend) DeleteCluster(ctx context.Context) error {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	prefix, _ := b.paths()
	s, err := b.session(ctx)
	if err != nil {
		return fmt.Errorf("deleting cluster %s: %w", prefix, mapErr(err))
	}
	if err := deleteTree(ctx, s, prefix); err != nil {
		return fmt.Errorf("deleting cluster %s: %w", prefix, mapErr(err))
	}
	return nil
}

// deleteTree deletes path and its descendants; children that appear
// meanwhile are deleted too.
func deleteTree(ctx context.Context, s *session, path string) error {
	for {
		children, err := do(ctx, s, func(c *zk.Conn) ([]string, error) {
			children, _, err := c.Children(path)
			return children, err
		})
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, child := range children {
			if err := deleteTree(ctx, s, path+"/"+child); err != nil {
				return err
			}
		}
		err = deleteNode(ctx, s, path, -1)
		if err == nil || errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if !errors.Is(err, zk.ErrNotEmpty) {
			return fmt.Errorf("deleting %s: %w", path, err)
		}
	}
}
