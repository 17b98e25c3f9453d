package dcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
)

// watchRetryDelay is the pause before re-opening a broken watch; short, so
// a replica misses little, long enough not to spin against a dead store.
const watchRetryDelay = 500 * time.Millisecond

// Store is the agent's handle on the DCS.
type Store struct {
	backend sdkdcs.Backend
	logger  hclog.Logger

	mu         sync.Mutex
	opTimeout  time.Duration
	lastStatus []byte
	// statusMalformed: the last read found /status malformed; the next
	// renewal writes it even when the value has not changed.
	statusMalformed bool
	problems        string
	// ttl and loopWait pace TouchMember (see touchFresh).
	ttl, loopWait time.Duration
	// view is the cluster as the last successful Read got it, nil after a
	// failed one.
	view *sdkdcs.Cluster
	// touched is the member data the last successful TouchMember wrote,
	// and touchedAt when that call began.
	touched   []byte
	touchedAt time.Time

	wake chan struct{}
}

// New wraps a configured backend. opTimeout bounds every call (the HA loop
// uses retry_timeout).
func New(backend sdkdcs.Backend, logger hclog.Logger, opTimeout time.Duration) *Store {
	return &Store{backend: backend, logger: logger, opTimeout: opTimeout, wake: make(chan struct{}, 1)}
}

// SetTimeout changes the per-call timeout (retry_timeout changed).
func (s *Store) SetTimeout(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opTimeout = d
}

// SetTiming tells the store the TTL and loop_wait in force (dynamic
// configuration).
func (s *Store) SetTiming(ttl, loopWait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl, s.loopWait = ttl, loopWait
}

func (s *Store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	s.mu.Lock()
	d := s.opTimeout
	s.mu.Unlock()
	return context.WithTimeout(parent, d)
}

// Backend is the plugin backend, for the operations that need it raw.
func (s *Store) Backend() sdkdcs.Backend { return s.backend }

// Wake fires when the watch saw a change the HA loop must react to at once.
func (s *Store) Wake() <-chan struct{} { return s.wake }

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Read gets the whole cluster. Malformed values are logged once (when the
// set of problems changes) and returned, never fatal.
func (s *Store) Read(ctx context.Context) (*cluster.Cluster, []error, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	raw, err := s.backend.GetCluster(ctx)
	if err != nil {
		s.mu.Lock()
		s.view = nil
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("reading the cluster from the DCS: %w", err)
	}
	s.mu.Lock()
	s.view = raw
	s.mu.Unlock()
	c, problems := cluster.FromDCS(raw)
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.Error())
	}
	joined := strings.Join(msgs, "; ")
	s.mu.Lock()
	changed := joined != s.problems
	s.problems = joined
	s.statusMalformed = c.IsMalformed(cluster.KeyStatus)
	s.mu.Unlock()
	if changed && joined != "" {
		s.logger.Warn("malformed values in the DCS", "problems", joined)
	}
	return c, problems, nil
}

// Watch runs until ctx ends, waking the HA loop on changes of the keys it
// must react to at once: the leader key, /failover, /config, /initialize
// and /sync. A broken watch is re-opened; the re-open wakes the loop too, as
// events may have been missed.
func (s *Store) Watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.backend.Watch(ctx, func(e sdkdcs.Event) {
			switch e.Path {
			case sdkdcs.LeaderPath, string(sdkdcs.KeyFailover), string(sdkdcs.KeyConfig), string(sdkdcs.KeyInitialize), string(sdkdcs.KeySync):
				s.signal()
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.logger.Debug("DCS watch ended; re-opening", "error", err)
		s.signal()
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetryDelay):
		}
	}
}

// AcquireLeader races for the leader key.
func (s *Store) AcquireLeader(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.backend.AcquireLeader(ctx); err != nil {
		return fmt.Errorf("acquiring the leader key: %w", err)
	}
	return nil
}

// RenewLeader renews the leader key.
func (s *Store) RenewLeader(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.backend.RenewLeader(ctx); err != nil {
		return fmt.Errorf("renewing the leader key: %w", err)
	}
	return nil
}

// KeyLost reports whether a leader-key error says the key is not this
// member's any more (someone else's, or gone and taken), rather than that
// the DCS could not be asked.
func KeyLost(err error) bool {
	return errors.Is(err, sdkdcs.ErrVersionMismatch) || errors.Is(err, sdkdcs.ErrExists) || errors.Is(err, sdkdcs.ErrNotFound)
}

// WriteStatus publishes /status (the leader's position and slots) when it
// changed since the last write.
func (s *Store) WriteStatus(ctx context.Context, status cluster.Status) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	data := status.Marshal()
	s.mu.Lock()
	same := string(data) == string(s.lastStatus) && !s.statusMalformed
	s.mu.Unlock()
	if same {
		return nil
	}
	if err := s.backend.Set(ctx, sdkdcs.KeyStatus, data); err != nil {
		return fmt.Errorf("writing /status: %w", err)
	}
	s.mu.Lock()
	s.lastStatus = data
	s.mu.Unlock()
	return nil
}

// ReleaseLeader deletes the leader key if it is still mine.
func (s *Store) ReleaseLeader(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.backend.DeleteLeader(ctx); err != nil {
		return fmt.Errorf("releasing the leader key: %w", err)
	}
	return nil
}

// TouchMember publishes the member key and refreshes its TTL. The call to
// the plugin is skipped while it would change nothing: the data is what the
// last call wrote, the cluster read this cycle shows the key with exactly
// that data, and the last call is recent enough (touchFresh). A plugin call
// is an RPC to another process even when the plugin then finds nothing to
// write; skipping it is most of what an idle replica saves per cycle.
func (s *Store) TouchMember(ctx context.Context, m cluster.Member) error {
	data := m.Marshal()
	start := time.Now()
	if s.touchFresh(m.Name, data, start) {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	err := s.backend.TouchMember(ctx, data)
	s.mu.Lock()
	if err != nil {
		s.touched, s.touchedAt = nil, time.Time{}
	} else {
		s.touched, s.touchedAt = data, start
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("writing members/%s: %w", m.Name, err)
	}
	return nil
}

// touchFresh reports whether a TouchMember of data at now may be skipped:
// only while the next cycle, one loop_wait on, still comes within ttl/3 of
// the last call. Calls are then never more than ttl/3 apart (plus a slow
// cycle), and a backend that refreshes the lease on every call, or on a
// call once its last refresh is older than ttl/3 (etcd3), refreshes it at
// least every 2*ttl/3: a third of the TTL stays for a slow cycle. With
// Patroni's default timing (ttl 30, loop_wait 10) nothing is skipped.
func (s *Store) touchFresh(name string, data []byte, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ttl <= 0 || s.touched == nil || s.view == nil || !bytes.Equal(data, s.touched) {
		return false
	}
	age := now.Sub(s.touchedAt)
	if age < 0 || age+s.loopWait >= s.ttl/3 {
		return false
	}
	for _, m := range s.view.Members {
		if m.Name == name {
			return bytes.Equal(m.Data, data)
		}
	}
	return false
}

// RaceInitialize creates /initialize empty; ErrExists when another member
// got there first.
func (s *Store) RaceInitialize(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.backend.CompareAndSet(ctx, sdkdcs.KeyInitialize, []byte(""), ""); err != nil {
		return fmt.Errorf("racing for /initialize: %w", err)
	}
	return nil
}

// WriteInitialize stores the system identifier over the version read
// (create-only when the key was absent).
func (s *Store) WriteInitialize(ctx context.Context, sysid, version string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.backend.CompareAndSet(ctx, sdkdcs.KeyInitialize, []byte(sysid), version); err != nil {
		return fmt.Errorf("writing /initialize = %s: %w", sysid, err)
	}
	return nil
}

// CancelInitialize deletes /initialize after a failed bootstrap.
func (s *Store) CancelInitialize(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.backend.CompareAndDelete(ctx, sdkdcs.KeyInitialize, ""); err != nil {
		return fmt.Errorf("cancelling the initialization: %w", err)
	}
	return nil
}

// WriteConfig creates /config; a config written meanwhile by another member
// is left alone.
func (s *Store) WriteConfig(ctx context.Context, data []byte) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.backend.CompareAndSet(ctx, sdkdcs.KeyConfig, data, "")
	if err != nil && !errors.Is(err, sdkdcs.ErrExists) {
		return fmt.Errorf("writing /config: %w", err)
	}
	return nil
}

// ClearFailover resets /failover to {} over the version read, as Patroni
// does (the key is not deleted).
func (s *Store) ClearFailover(ctx context.Context, version string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.backend.CompareAndSet(ctx, sdkdcs.KeyFailover, []byte("{}"), version); err != nil {
		return fmt.Errorf("clearing /failover: %w", err)
	}
	return nil
}

// WriteSync writes /sync over the version read ("" = create-only).
func (s *Store) WriteSync(ctx context.Context, state cluster.SyncState, version string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.backend.CompareAndSet(ctx, sdkdcs.KeySync, state.Marshal(), version); err != nil {
		return fmt.Errorf("writing /sync: %w", err)
	}
	return nil
}

// DeleteSync deletes /sync over the version read.
func (s *Store) DeleteSync(ctx context.Context, version string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.backend.CompareAndDelete(ctx, sdkdcs.KeySync, version); err != nil {
		return fmt.Errorf("deleting /sync: %w", err)
	}
	return nil
}

// SetFailsafe writes /failsafe.
func (s *Store) SetFailsafe(ctx context.Context, f cluster.Failsafe) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.backend.Set(ctx, sdkdcs.KeyFailsafe, f.Marshal()); err != nil {
		return fmt.Errorf("writing /failsafe: %w", err)
	}
	return nil
}

// SetHistory writes /history.
func (s *Store) SetHistory(ctx context.Context, h cluster.History) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.backend.Set(ctx, sdkdcs.KeyHistory, h.Marshal()); err != nil {
		return fmt.Errorf("writing /history: %w", err)
	}
	return nil
}

// Close closes the backend.
func (s *Store) Close(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.backend.Close(ctx)
}
