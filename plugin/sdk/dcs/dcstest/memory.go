package dcstest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// expiryTick is how often the memory store looks for expired sessions; it
// bounds how late after its TTL an unrenewed key disappears.
const expiryTick = 20 * time.Millisecond

// MemoryStore is the in-memory reference DCS: a versioned key space with
// sessions that expire, shared by every Backend it hands out. It is what
// the contract means, written as plainly as possible; it passes
// RunConformance and serves unit tests of the host.
type MemoryStore struct {
	mu       sync.Mutex
	rev      int64
	keys     map[string]*memEntry
	sessions map[int64]time.Time // session id -> expiry
	nextSess int64
	watchers map[int]func(dcs.Event, string)
	nextW    int

	stop chan struct{}
	done chan struct{}
}

type memEntry struct {
	data    []byte
	version int64
	session int64 // 0: permanent
}

// NewMemoryStore starts a store; Stop ends its expiry goroutine.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{
		keys:     map[string]*memEntry{},
		sessions: map[int64]time.Time{},
		watchers: map[int]func(dcs.Event, string){},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.expireLoop()
	return s
}

// Stop ends the store's background work.
func (s *MemoryStore) Stop() {
	close(s.stop)
	<-s.done
}

func (s *MemoryStore) expireLoop() {
	defer close(s.done)
	t := time.NewTicker(expiryTick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			for id, exp := range s.sessions {
				if now.After(exp) {
					s.dropSessionLocked(id)
				}
			}
			s.mu.Unlock()
		}
	}
}

// dropSessionLocked ends a session and deletes the keys living on it.
func (s *MemoryStore) dropSessionLocked(id int64) {
	delete(s.sessions, id)
	for k, e := range s.keys {
		if e.session == id {
			s.deleteLocked(k)
		}
	}
}

func (s *MemoryStore) putLocked(key string, data []byte, session int64) int64 {
	s.rev++
	s.keys[key] = &memEntry{data: append([]byte(nil), data...), version: s.rev, session: session}
	s.notifyLocked(dcs.Event{Type: dcs.EventPut, Version: strconv.FormatInt(s.rev, 10)}, key)
	return s.rev
}

func (s *MemoryStore) deleteLocked(key string) {
	if _, ok := s.keys[key]; !ok {
		return
	}
	s.rev++
	delete(s.keys, key)
	s.notifyLocked(dcs.Event{Type: dcs.EventDelete, Version: strconv.FormatInt(s.rev, 10)}, key)
}

func (s *MemoryStore) notifyLocked(e dcs.Event, key string) {
	for _, w := range s.watchers {
		w(e, key)
	}
}

// NewBackend returns a new client of the store, as a separate agent
// would have.
func (s *MemoryStore) NewBackend() dcs.Backend { return &memBackend{store: s} }

// memBackend is one client of a MemoryStore.
type memBackend struct {
	store *MemoryStore

	mu      sync.Mutex
	prefix  string
	member  string
	ttl     time.Duration
	session int64
	closed  bool
	closeCh chan struct{}
}

// memConfig is the memory backend's configuration section; it has no keys.
type memConfig struct{}

func (b *memBackend) Validate(_ context.Context, config []byte) error {
	if len(config) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(config)))
	dec.DisallowUnknownFields()
	var c memConfig
	if err := dec.Decode(&c); err != nil {
		errs := &sdk.ConfigError{}
		errs.Add("", "%v", err)
		return errs
	}
	return nil
}

func (b *memBackend) Configure(ctx context.Context, req dcs.ConfigureRequest) error {
	if err := b.Validate(ctx, req.Config); err != nil {
		return err
	}
	errs := &sdk.ConfigError{}
	if req.Scope == "" {
		errs.Add("scope", "must not be empty")
	}
	if req.Member == "" {
		errs.Add("name", "must not be empty")
	}
	if req.TTL <= 0 {
		errs.Add("ttl", "must be positive")
	}
	if err := errs.OrNil(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prefix = dcs.Prefix(req.Namespace, req.Scope)
	b.member = req.Member
	b.ttl = req.TTL
	b.closeCh = make(chan struct{})
	return nil
}

func (b *memBackend) SetTTL(_ context.Context, ttl time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ttl = ttl
	return nil
}

// begin locks the store and the client for one operation.
func (b *memBackend) begin() (unlock func(), err error) {
	b.mu.Lock()
	if b.closed || b.prefix == "" {
		b.mu.Unlock()
		return nil, fmt.Errorf("memory backend closed or not configured: %w", dcs.ErrUnavailable)
	}
	b.store.mu.Lock()
	return func() { b.store.mu.Unlock(); b.mu.Unlock() }, nil
}

// leaseLocked returns this client's live session, refreshing its expiry,
// and starts a new one when the old one expired.
func (b *memBackend) leaseLocked() int64 {
	s := b.store
	if _, ok := s.sessions[b.session]; !ok || b.session == 0 {
		s.nextSess++
		b.session = s.nextSess
	}
	s.sessions[b.session] = time.Now().Add(b.ttl)
	return b.session
}

func (b *memBackend) GetCluster(context.Context) (*dcs.Cluster, error) {
	unlock, err := b.begin()
	if err != nil {
		return nil, err
	}
	defer unlock()
	c := &dcs.Cluster{}
	for k, e := range b.store.keys {
		rel, ok := strings.CutPrefix(k, b.prefix)
		if !ok {
			continue
		}
		version := strconv.FormatInt(e.version, 10)
		data := append([]byte(nil), e.data...)
		switch {
		case rel == dcs.LeaderPath:
			c.Leader = &dcs.Leader{Name: string(data), Version: version, Session: strconv.FormatInt(e.session, 10)}
		case strings.HasPrefix(rel, dcs.MembersPath):
			name := strings.TrimPrefix(rel, dcs.MembersPath)
			if name == "" || strings.Contains(name, "/") {
				continue
			}
			c.Members = append(c.Members, dcs.Member{Name: name, Data: data, Version: version, Session: strconv.FormatInt(e.session, 10)})
		default:
			c.Put(dcs.Key(rel), &dcs.Value{Data: data, Version: version})
		}
	}
	sort.Slice(c.Members, func(i, j int) bool { return c.Members[i].Name < c.Members[j].Name })
	return c, nil
}

func (b *memBackend) AcquireLeader(context.Context) (string, error) {
	unlock, err := b.begin()
	if err != nil {
		return "", err
	}
	defer unlock()
	key := b.prefix + dcs.LeaderPath
	if _, ok := b.store.keys[key]; ok {
		return "", dcs.ErrExists
	}
	return strconv.FormatInt(b.store.putLocked(key, []byte(b.member), b.leaseLocked()), 10), nil
}

func (b *memBackend) RenewLeader(context.Context) error {
	unlock, err := b.begin()
	if err != nil {
		return err
	}
	defer unlock()
	key := b.prefix + dcs.LeaderPath
	e, ok := b.store.keys[key]
	switch {
	case ok && string(e.data) != b.member:
		return fmt.Errorf("leader key holds %q: %w", e.data, dcs.ErrVersionMismatch)
	case ok && e.session == b.session && b.store.sessions[b.session] != time.Time{}:
		b.leaseLocked()
	default:
		b.store.putLocked(key, []byte(b.member), b.leaseLocked())
	}
	return nil
}

func (b *memBackend) TakeLeader(context.Context) error {
	unlock, err := b.begin()
	if err != nil {
		return err
	}
	defer unlock()
	b.store.putLocked(b.prefix+dcs.LeaderPath, []byte(b.member), b.leaseLocked())
	return nil
}

func (b *memBackend) DeleteLeader(context.Context) error {
	unlock, err := b.begin()
	if err != nil {
		return err
	}
	defer unlock()
	key := b.prefix + dcs.LeaderPath
	e, ok := b.store.keys[key]
	if !ok {
		return nil
	}
	if string(e.data) != b.member {
		return fmt.Errorf("leader key holds %q: %w", e.data, dcs.ErrVersionMismatch)
	}
	b.store.deleteLocked(key)
	return nil
}

func (b *memBackend) TouchMember(_ context.Context, data []byte) error {
	unlock, err := b.begin()
	if err != nil {
		return err
	}
	defer unlock()
	b.store.putLocked(b.prefix+dcs.MembersPath+b.member, data, b.leaseLocked())
	return nil
}

func (b *memBackend) CompareAndSet(_ context.Context, key dcs.Key, data []byte, version string) (string, error) {
	unlock, err := b.begin()
	if err != nil {
		return "", err
	}
	defer unlock()
	k := b.prefix + string(key)
	e, ok := b.store.keys[k]
	switch {
	case version == "" && ok:
		return "", fmt.Errorf("%s: %w", key, dcs.ErrExists)
	case version != "" && !ok:
		return "", fmt.Errorf("%s: %w", key, dcs.ErrNotFound)
	case version != "" && strconv.FormatInt(e.version, 10) != version:
		return "", fmt.Errorf("%s at version %d, not %s: %w", key, e.version, version, dcs.ErrVersionMismatch)
	}
	return strconv.FormatInt(b.store.putLocked(k, data, 0), 10), nil
}

func (b *memBackend) CompareAndDelete(_ context.Context, key dcs.Key, version string) error {
	unlock, err := b.begin()
	if err != nil {
		return err
	}
	defer unlock()
	k := b.prefix + string(key)
	e, ok := b.store.keys[k]
	if version != "" {
		if !ok {
			return fmt.Errorf("%s: %w", key, dcs.ErrNotFound)
		}
		if strconv.FormatInt(e.version, 10) != version {
			return fmt.Errorf("%s at version %d, not %s: %w", key, e.version, version, dcs.ErrVersionMismatch)
		}
	}
	b.store.deleteLocked(k)
	return nil
}

func (b *memBackend) Set(_ context.Context, key dcs.Key, data []byte) error {
	unlock, err := b.begin()
	if err != nil {
		return err
	}
	defer unlock()
	b.store.putLocked(b.prefix+string(key), data, 0)
	return nil
}

func (b *memBackend) DeleteCluster(context.Context) error {
	unlock, err := b.begin()
	if err != nil {
		return err
	}
	defer unlock()
	for k := range b.store.keys {
		if strings.HasPrefix(k, b.prefix) {
			b.store.deleteLocked(k)
		}
	}
	return nil
}

func (b *memBackend) Watch(ctx context.Context, fn func(dcs.Event)) error {
	b.mu.Lock()
	if b.closed || b.prefix == "" {
		b.mu.Unlock()
		return fmt.Errorf("memory backend closed or not configured: %w", dcs.ErrUnavailable)
	}
	prefix, closeCh := b.prefix, b.closeCh
	b.mu.Unlock()

	// Events are queued under the store lock and delivered from this
	// goroutine, so fn never runs with the store locked.
	var (
		qmu   sync.Mutex
		queue []dcs.Event
		wake  = make(chan struct{}, 1)
	)
	s := b.store
	s.mu.Lock()
	id := s.nextW
	s.nextW++
	s.watchers[id] = func(e dcs.Event, key string) {
		rel, ok := strings.CutPrefix(key, prefix)
		if !ok {
			return
		}
		e.Path = rel
		qmu.Lock()
		queue = append(queue, e)
		qmu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, id)
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-closeCh:
			return fmt.Errorf("memory backend closed: %w", dcs.ErrUnavailable)
		case <-wake:
			qmu.Lock()
			events := queue
			queue = nil
			qmu.Unlock()
			for _, e := range events {
				fn(e)
			}
		}
	}
}

func (b *memBackend) Close(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed && b.closeCh != nil {
		close(b.closeCh)
	}
	b.closed = true
	return nil
}
