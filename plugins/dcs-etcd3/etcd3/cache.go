package etcd3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Timing of the watch cache.
const (
	// syncWait bounds how long a read waits for the watch to answer a
	// progress request, or to deliver a revision this plugin has seen,
	// before it reads etcd directly instead. On loopback the answer takes
	// well under a millisecond; a busy etcd that needs longer is read with
	// a Range, which is what a read cost before the cache.
	syncWait = 250 * time.Millisecond
	// memberWait is how long TouchMember waits for the watch to deliver a
	// revision (typically its own previous write, such as /status written
	// just before) before asking etcd for progress.
	memberWait = 50 * time.Millisecond
	// maxUnanswered is how long a progress request may stay unanswered
	// before a read starts a new session: a late answer only costs the reads
	// meanwhile a Range each, but a request etcd dropped (etcd 3.5 and later
	// drop those that reach a watch catching up) would leave every later
	// answer counted for the wrong request.
	maxUnanswered = 2 * time.Second
	// maxUnproven is how long a session whose watch is not proven in sync
	// (see stream.proven) is kept before a read starts a new one; reads
	// use a Range meanwhile. A watch catches up within 100 ms.
	maxUnproven = time.Second
	// minResync and maxResync bound the pause between two attempts to
	// (re)open the watch: quick after a single break, and at most one
	// attempt every two seconds while etcd is down.
	minResync = 100 * time.Millisecond
	maxResync = 2 * time.Second
)

// cache is a copy of every key under the cluster prefix, fed by one etcd
// watch per backend (see the package documentation for its consistency).
//
// A session opens a watch stream starting at etcd's current revision, then
// reads the prefix with one linearizable Range at a revision at or above the
// watch's start, and from then on applies the watch's events newer than that
// Range. When the stream breaks for any reason (lost connection, etcd member
// without a leader, compaction, cancellation) the copy is marked out of sync
// and a new session starts over: the client library's silent resumption of a
// broken watch is not used, so that a copy in sync always comes from one
// unbroken stream.
type cache struct {
	logger hclog.Logger
	client *clientv3.Client
	prefix string
	// readTimeout bounds the Range of a (re)sync.
	readTimeout time.Duration
	// attempt bounds one attempt of that Range, and the wait for etcd to
	// confirm the watch (see attemptTimeout); 0: readTimeout alone.
	attempt time.Duration
	// reconnect, when set, is told of a watch stream whose member did not
	// answer.
	reconnect *reconnector

	stop context.CancelFunc
	done chan struct{}

	mu     sync.Mutex
	closed bool
	// synced: kvs holds every key as of rev, and the stream feeding it is
	// open.
	synced bool
	// rev is the revision up to which every change under the prefix is in
	// kvs: raised by the events themselves and by the answers to progress
	// requests (an answer covers every change etcd had committed when it
	// read the request).
	rev int64
	kvs map[string]*mvccpb.KeyValue
	// changed is closed (and replaced) whenever rev, kvs or synced change.
	changed chan struct{}
	stream  *stream
	subs    map[*subscriber]struct{}
}

// stream is one watch session's stream as seen by readers.
type stream struct {
	// sendMu orders progress requests with their numbering: gRPC streams
	// allow one sender at a time.
	sendMu sync.Mutex
	send   func(*pb.WatchRequest) error
	// end breaks the session (the cache then resyncs).
	end context.CancelFunc
	// hung, when set, reports the stream's member as not answering.
	hung func()
	// snapshotRev is the revision of the session's Range; events at or
	// below it are already in it.
	snapshotRev int64
	// installed is when the snapshot became the copy.
	installed time.Time
	// proven: the watch is known to be in sync on the server, so that etcd
	// pushes each change to it as it commits it. etcd 3.4 starts a watch
	// without a start revision at the revision it read just before creating
	// it; a write in between leaves the watch catching up for up to 100 ms,
	// and during that time it answers progress requests with its current
	// revision although it has not sent the changes yet. The watch is proven in sync when the session's Range
	// read the very revision the watch was created at (nothing was written
	// in between), or once it delivered an event (a catching-up watch sends
	// everything it missed at once, then is in sync). Guarded by cache.mu.
	proven bool
	// sent and answered count the progress requests sent on the stream
	// and their answers. etcd answers them in order on the stream, after
	// every event it had queued for the watch before (see the package
	// documentation for releases before the fix of etcd issue 15220).
	// Guarded by cache.mu.
	sent, answered uint64
	// awaited is the first request a read stopped waiting for while it was
	// still unanswered, and awaitedSince when (guarded by cache.mu).
	awaited      uint64
	awaitedSince time.Time
}

func newCache(logger hclog.Logger, client *clientv3.Client, prefix string, readTimeout, attempt time.Duration) *cache {
	return &cache{
		logger:      logger,
		client:      client,
		prefix:      prefix,
		readTimeout: readTimeout,
		attempt:     attempt,
		done:        make(chan struct{}),
		changed:     make(chan struct{}),
		subs:        map[*subscriber]struct{}{},
	}
}

// start runs the cache's sessions until close.
func (c *cache) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go c.run(ctx)
}

// close ends the watch, waits for it, and ends the subscribers' feeds.
func (c *cache) close() {
	c.stop()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.unsyncLocked(errClosed)
}

func (c *cache) run(ctx context.Context) {
	defer close(c.done)
	pause := minResync
	for {
		wasSynced, err := c.session(ctx)
		c.mu.Lock()
		c.unsyncLocked(fmt.Errorf("watch broke: %w: %v", dcs.ErrUnavailable, err))
		c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, errResync):
			c.logger.Debug("resyncing the watch cache", "error", err)
			pause = minResync
		case wasSynced:
			c.logger.Warn("watch cache out of sync; reading the cluster again", "error", err)
			pause = minResync
		default:
			c.logger.Debug("watch cache not synced", "error", err, "retry_in", pause)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		if !wasSynced {
			pause = min(2*pause, maxResync)
		}
	}
}

// session runs one watch stream: it opens it, syncs the copy and applies
// events until the stream breaks. wasSynced says the copy was in sync.
func (c *cache) session(ctx context.Context) (wasSynced bool, err error) {
	// WithRequireLeader ends the stream when the etcd member it runs on
	// loses its leader, instead of leaving it silently stuck on a
	// partitioned member.
	sctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	defer cancel(nil)
	ws, err := pb.NewWatchClient(c.client.ActiveConnection()).Watch(sctx)
	if err != nil {
		return false, fmt.Errorf("opening a watch stream: %w", err)
	}
	// No start revision: the watch starts at etcd's current revision, in
	// sync on the server from the start (etcd 3.4: see stream.proven), so
	// that progress requests are answered at once.
	err = ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key:      []byte(c.prefix),
		RangeEnd: []byte(clientv3.GetPrefixRangeEnd(c.prefix)),
	}}})
	if err != nil {
		return false, fmt.Errorf("creating a watch: %w", err)
	}
	// An etcd member that takes the stream but never answers (a frozen
	// process holds its connections open) must not hold the session up
	// past one attempt: the next session's stream goes to another member.
	confirm := c.readTimeout
	if c.attempt > 0 {
		confirm = min(confirm, c.attempt)
	}
	slow := time.AfterFunc(confirm, func() { cancel(errSlowCreate) })
	created, err := ws.Recv()
	slow.Stop()
	if err != nil {
		if cause := context.Cause(sctx); errors.Is(cause, errSlowCreate) {
			err = cause
			c.hung(ws)
		}
		return false, fmt.Errorf("creating a watch: %w", err)
	}
	if !created.Created || created.Canceled {
		return false, fmt.Errorf("creating a watch: refused: %s", created.CancelReason)
	}
	createdRev := created.Header.GetRevision()

	rctx, rcancel := context.WithTimeout(ctx, c.readTimeout)
	var resp *clientv3.GetResponse
	err = retry(rctx, c.attempt, func(ctx context.Context, _ bool) error {
		var err error
		resp, err = c.client.Get(ctx, c.prefix, clientv3.WithPrefix())
		return err
	})
	rcancel()
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", c.prefix, err)
	}
	st := &stream{
		send:        ws.Send,
		end:         func() { cancel(errResync) },
		hung:        func() { c.hung(ws) },
		snapshotRev: resp.Header.Revision,
		proven:      resp.Header.Revision == createdRev,
	}
	c.install(st, resp.Kvs)
	for {
		wr, err := ws.Recv()
		if err != nil {
			if cause := context.Cause(sctx); errors.Is(cause, errResync) {
				return true, cause
			}
			return true, err
		}
		if wr.Canceled {
			if wr.CompactRevision != 0 {
				return true, fmt.Errorf("watch compacted at revision %d", wr.CompactRevision)
			}
			return true, fmt.Errorf("watch cancelled by etcd: %s", wr.CancelReason)
		}
		c.apply(st, wr)
	}
}

// hung reports the member of a watch stream as not answering.
func (c *cache) hung(ws grpc.ClientStream) {
	if c.reconnect != nil {
		c.reconnect.hungStream(ws, "watch")
	}
}

// install makes a session's snapshot the copy.
func (c *cache) install(st *stream, kvs []*mvccpb.KeyValue) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kvs = make(map[string]*mvccpb.KeyValue, len(kvs))
	for _, kv := range kvs {
		c.kvs[string(kv.Key)] = kv
	}
	c.rev = st.snapshotRev
	st.installed = time.Now()
	c.stream = st
	c.synced = true
	c.logger.Debug("watch cache in sync", "revision", c.rev, "keys", len(kvs), "proven", st.proven)
	c.broadcastLocked()
}

// apply takes one watch response of the session.
func (c *cache) apply(st *stream, wr *pb.WatchResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != st {
		return
	}
	if len(wr.Events) == 0 {
		// The answer to a progress request carries no watch ID: every
		// change up to its header revision has been sent before it.
		if wr.WatchId == clientv3.InvalidWatchID && !wr.Created {
			st.answered++
			c.rev = max(c.rev, wr.Header.GetRevision())
			c.broadcastLocked()
		}
		return
	}
	st.proven = true
	out := make([]dcs.Event, 0, len(wr.Events))
	before := c.rev
	for _, ev := range wr.Events {
		kv := ev.Kv
		// Events the snapshot already holds are skipped by the snapshot's
		// revision, never by rev: an event must not be lost because a
		// progress answer got ahead of it.
		if kv == nil || kv.ModRevision <= st.snapshotRev {
			continue
		}
		if kv.ModRevision <= before {
			// A progress answer got ahead of this event (etcd issue 15220):
			// a read may have missed it; from now on it is in.
			c.logger.Warn("watch event arrived after a progress answer covering it", "event_revision", kv.ModRevision, "revision", before)
		}
		e := dcs.Event{Path: strings.TrimPrefix(string(kv.Key), c.prefix), Version: revString(kv.ModRevision)}
		switch ev.Type {
		case mvccpb.PUT:
			c.kvs[string(kv.Key)] = kv
			e.Type = dcs.EventPut
		case mvccpb.DELETE:
			delete(c.kvs, string(kv.Key))
			e.Type = dcs.EventDelete
		default:
			continue
		}
		c.rev = max(c.rev, kv.ModRevision)
		out = append(out, e)
	}
	if len(out) == 0 {
		return
	}
	for s := range c.subs {
		s.push(out, nil)
	}
	c.broadcastLocked()
}

// unsyncLocked marks the copy out of sync and ends the subscribers' feeds
// with err.
func (c *cache) unsyncLocked(err error) {
	c.synced = false
	c.stream = nil
	c.kvs = nil
	for s := range c.subs {
		s.push(nil, err)
		delete(c.subs, s)
	}
	c.broadcastLocked()
}

func (c *cache) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// read returns every key under the prefix, sorted, once the copy holds
// every change etcd had made when read was called (proved by the answer to
// a progress request sent now) and every revision up to minRev. ok is
// false when it cannot tell within syncWait: the caller reads etcd itself.
func (c *cache) read(ctx context.Context, minRev int64) (kvs []*mvccpb.KeyValue, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.progressLocked(ctx, minRev) {
		return nil, false
	}
	kvs = make([]*mvccpb.KeyValue, 0, len(c.kvs))
	for _, kv := range c.kvs {
		kvs = append(kvs, kv)
	}
	sort.Slice(kvs, func(i, j int) bool { return bytes.Compare(kvs[i].Key, kvs[j].Key) < 0 })
	return kvs, true
}

// progressLocked sends a progress request and waits for its answer and for
// rev to reach minRev. Called and returns with c.mu held.
func (c *cache) progressLocked(ctx context.Context, minRev int64) bool {
	if !c.synced {
		return false
	}
	st := c.stream
	if !st.proven {
		if time.Since(st.installed) > maxUnproven {
			c.logger.Debug("watch not proven in sync; resyncing the watch cache", "after", maxUnproven)
			st.end()
		}
		return false
	}
	if st.awaited > st.answered && time.Since(st.awaitedSince) > maxUnanswered {
		c.logger.Debug("a progress request is still unanswered; resyncing the watch cache", "after", maxUnanswered)
		if st.hung != nil {
			st.hung()
		}
		st.end()
		return false
	}
	n, err := c.requestProgressLocked(st)
	if err != nil {
		c.logger.Debug("sending a progress request", "error", err)
		st.end()
		return false
	}
	deadline := time.Now().Add(syncWait)
	if !c.waitLocked(ctx, st, deadline, func() bool { return st.answered >= n && c.rev >= minRev }) {
		if c.stream == st && st.answered < n && st.awaited <= st.answered {
			st.awaited, st.awaitedSince = n, time.Now()
		}
		return false
	}
	return true
}

// requestProgressLocked sends a progress request and returns its number.
// It releases c.mu while sending.
func (c *cache) requestProgressLocked(st *stream) (uint64, error) {
	c.mu.Unlock()
	st.sendMu.Lock()
	c.mu.Lock()
	st.sent++
	n := st.sent
	c.mu.Unlock()
	err := st.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
	st.sendMu.Unlock()
	c.mu.Lock()
	return n, err
}

// waitLocked waits until done holds while the stream st stays the cache's
// one, until deadline or ctx ends. Called and returns with c.mu held.
func (c *cache) waitLocked(ctx context.Context, st *stream, deadline time.Time, done func() bool) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		if !c.synced || c.stream != st {
			return false
		}
		if done() {
			return true
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
			c.mu.Lock()
		case <-timer.C:
			c.mu.Lock()
			return c.synced && c.stream == st && done()
		case <-ctx.Done():
			c.mu.Lock()
			return false
		}
	}
}

// reach waits until the copy holds every change up to rev: for wait, for
// the watch to deliver it, then for the answer to a progress request.
func (c *cache) reach(ctx context.Context, rev int64, wait time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced {
		return false
	}
	st := c.stream
	if c.waitLocked(ctx, st, time.Now().Add(wait), func() bool { return c.rev >= rev }) {
		return true
	}
	return c.progressLocked(ctx, rev)
}

// current reports whether the copy is in sync at rev or later and holds key
// with exactly value on lease.
func (c *cache) current(key string, value []byte, lease clientv3.LeaseID, rev int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced || c.rev < rev {
		return false
	}
	kv := c.kvs[key]
	return kv != nil && kv.Lease == int64(lease) && bytes.Equal(kv.Value, value)
}

// subscribe starts a feed of the events applied from now on, once the copy
// is in sync (waiting for it until ctx ends).
func (c *cache) subscribe(ctx context.Context) (*subscriber, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.synced {
		if c.closed {
			return nil, errClosed
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			return nil, ctx.Err()
		}
	}
	s := &subscriber{wake: make(chan struct{}, 1)}
	c.subs[s] = struct{}{}
	return s, nil
}

func (c *cache) unsubscribe(s *subscriber) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, s)
}

// subscriber is the feed of one Watch call: the cache appends, Watch takes.
// The queue is unbounded so that a slow callback never holds the cache up.
type subscriber struct {
	mu     sync.Mutex
	events []dcs.Event
	err    error
	wake   chan struct{}
}

// push queues events, or ends the feed with err.
func (s *subscriber) push(events []dcs.Event, err error) {
	s.mu.Lock()
	s.events = append(s.events, events...)
	if err != nil && s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events and the end of the feed, if any.
func (s *subscriber) take() ([]dcs.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	events := s.events
	s.events = nil
	return events, s.err
}

// errResync ends a session on purpose: a reader found it not in sync or
// not answering.
var errResync = errors.New("resync asked for by a reader")

// errSlowCreate ends a session whose watch etcd did not confirm in time.
var errSlowCreate = errors.New("watch creation not confirmed in time")
