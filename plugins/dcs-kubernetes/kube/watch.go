package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Watch timing.
const (
	// relistBackoffMin and relistBackoffMax space the attempts to list and
	// watch again after the API server failed.
	relistBackoffMin = 100 * time.Millisecond
	relistBackoffMax = 2 * time.Second
	// minWatchDuration: a watch the server ends sooner than this is resumed
	// after a backoff, so that a server that closes every watch at once is
	// not hammered. The API server normally ends watches after minutes.
	minWatchDuration = time.Second
	// subscriberBuffer is how many events a slow Watch caller may fall
	// behind before its watch breaks (it then re-reads and watches again).
	subscriberBuffer = 1024
)

// observer keeps a watch on the cluster's objects from Configure to Close:
// a list-then-watch stream per kind feeds a cache, and every change (and
// every expiry deadline, on a timer) rebuilds the cluster's view and turns
// the difference into events for the Watch callers. It also keeps the
// leader and member records observed between reads, so that their
// liveness is judged from when they really changed.
type observer struct {
	c      *connection
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	// ready is closed once every stream has listed and the first view is
	// built: from then on every change is an event.
	ready chan struct{}

	mu      sync.Mutex
	streams []*stream
	current *dcs.Cluster // nil until every stream has listed once
	subs    map[*subscriber]struct{}
	stopped bool
}

// stream is one list-then-watch of one kind.
type stream struct {
	api     objectAPI
	members bool // holds member records (Pods, member ConfigMaps)
	synced  bool
	objects map[string]object
}

type subscriber struct {
	ch  chan dcs.Event
	err error // why ch was closed
}

func newObserver(c *connection) *observer {
	ctx, cancel := context.WithCancel(context.Background())
	o := &observer{c: c, cancel: cancel, wake: make(chan struct{}, 1), ready: make(chan struct{}), subs: map[*subscriber]struct{}{}}
	o.streams = append(o.streams, &stream{api: c.kinds, members: c.membersInKinds(), objects: map[string]object{}})
	if !c.membersInKinds() {
		o.streams = append(o.streams, &stream{api: c.members, members: true, objects: map[string]object{}})
	}
	for _, s := range o.streams {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.run(ctx, s)
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.loop(ctx)
	}()
	return o
}

// waitReady waits until the first view is built, at most for ctx.
func (o *observer) waitReady(ctx context.Context) bool {
	select {
	case <-o.ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// stop ends the streams and every open Watch, and waits for the
// goroutines.
func (o *observer) stop() {
	o.cancel()
	o.wg.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stopped = true
	for s := range o.subs {
		s.err = errClosed
		close(s.ch)
		delete(o.subs, s)
	}
}

func (o *observer) notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run lists and watches one kind until ctx ends, listing again whenever
// the watch cannot resume.
func (o *observer) run(ctx context.Context, s *stream) {
	backoff := relistBackoffMin
	for ctx.Err() == nil {
		objs, rv, err := s.api.list(ctx, o.c.selector)
		if err != nil {
			o.c.logger.Debug("listing for the watch failed", "kind", s.api.kind(), "error", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, relistBackoffMax)
			continue
		}
		o.replace(s, objs)
		for ctx.Err() == nil {
			started := time.Now()
			next, err := o.watch(ctx, s, rv)
			if err == nil {
				// The server ended the watch: resume from where it was, at
				// once unless it keeps ending them right away.
				rv = next
				if time.Since(started) < minWatchDuration {
					sleep(ctx, backoff)
					backoff = min(2*backoff, relistBackoffMax)
				} else {
					backoff = relistBackoffMin
				}
				continue
			}
			if ctx.Err() == nil {
				o.c.logger.Debug("watch ended; listing again", "kind", s.api.kind(), "error", err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, relistBackoffMax)
			}
			break
		}
	}
}

// watch follows one watch request from rv and returns the resourceVersion
// to resume from when the server ends it normally, or an error when it
// cannot resume (expired resourceVersion, request failed).
func (o *observer) watch(ctx context.Context, s *stream, rv string) (string, error) {
	w, err := s.api.watch(ctx, o.c.selector, rv)
	if err != nil {
		return "", err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return rv, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, nil
			}
			switch ev.Type {
			case watch.Error:
				return "", fmt.Errorf("watch error: %v", apierrors.FromObject(ev.Object))
			case watch.Bookmark:
				if obj, ok := s.api.convert(ev.Object); ok && obj.rv != "" {
					rv = obj.rv
				}
			case watch.Added, watch.Modified, watch.Deleted:
				obj, ok := s.api.convert(ev.Object)
				if !ok {
					return "", fmt.Errorf("watch sent an unexpected %T", ev.Object)
				}
				rv = obj.rv
				o.apply(s, ev.Type, obj)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (o *observer) replace(s *stream, objs []object) {
	o.mu.Lock()
	s.objects = make(map[string]object, len(objs))
	for _, obj := range objs {
		s.objects[obj.name] = obj
	}
	s.synced = true
	o.mu.Unlock()
	o.notify()
}

func (o *observer) apply(s *stream, typ watch.EventType, obj object) {
	o.mu.Lock()
	if typ == watch.Deleted {
		delete(s.objects, obj.name)
	} else {
		s.objects[obj.name] = obj
	}
	o.mu.Unlock()
	o.notify()
}

// memberObject returns the cached object holding a member's record.
func (o *observer) memberObject(member string) (object, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.streams {
		if !s.members {
			continue
		}
		name := member
		if o.c.memberStore != MemberStorePod {
			name = o.c.layout.memberObjectName(member)
		}
		if obj, ok := s.objects[name]; ok {
			return obj, true
		}
	}
	return object{}, false
}

// loop rebuilds the view after each change and at each expiry deadline and
// sends the differences to the subscribers.
func (o *observer) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-timer.C:
		}
		next := o.rebuild()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(max(time.Until(next), 0))
		}
	}
}

// rebuild views the cached objects, sends the events since the last view,
// and returns the next expiry deadline.
func (o *observer) rebuild() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	var kinds, members []object
	for _, s := range o.streams {
		if !s.synced {
			return time.Time{}
		}
		for _, obj := range s.objects {
			if s.api == o.c.kinds {
				kinds = append(kinds, obj)
			} else {
				members = append(members, obj)
			}
		}
	}
	cur, next := o.c.viewer.view(o.c.snapshot(kinds, members), o.c.ttlNow(), time.Now())
	prev := o.current
	if prev == nil {
		// A Watch that started before the first list cannot tell what
		// changed since it was called: everything the list found is news.
		prev = &dcs.Cluster{}
		close(o.ready)
	}
	for _, ev := range diff(prev, cur) {
		o.send(ev)
	}
	o.current = cur
	return next
}

// send hands an event to every subscriber; one that fell too far behind
// loses its subscription, and its Watch returns an error.
func (o *observer) send(ev dcs.Event) {
	for s := range o.subs {
		select {
		case s.ch <- ev:
		default:
			s.err = errors.New("watch fell behind: too many undelivered events")
			close(s.ch)
			delete(o.subs, s)
		}
	}
}

func (o *observer) subscribe() (*subscriber, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return nil, errClosed
	}
	s := &subscriber{ch: make(chan dcs.Event, subscriberBuffer)}
	o.subs[s] = struct{}{}
	return s, nil
}

func (o *observer) unsubscribe(s *subscriber) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.subs, s)
}

// Watch calls fn for every change of the cluster's keys seen by the
// backend's watch on the API server, and for every leader or member record
// that expires on this reader's clock (a delete, within milliseconds of the
// deadline). A renewal alone is no event. It returns nil when ctx ends, and
// an error when the backend is closed or fn fell too far behind.
func (b *Backend) Watch(ctx context.Context, fn func(dcs.Event)) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	s, err := c.observer.subscribe()
	if err != nil {
		return err
	}
	defer c.observer.unsubscribe(s)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-s.ch:
			if !ok {
				return fmt.Errorf("watching the cluster: %w", s.err)
			}
			fn(ev)
		}
	}
}
