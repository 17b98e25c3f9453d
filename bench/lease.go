package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leasePoll is how often the tracker asks etcd how long the leader's lease
// has left; it bounds the error of the renewal time to half of it.
const leasePoll = 20 * time.Millisecond

// leaseTracker follows the lease of the leader key, to tell how much of
// it was left when the leader was killed. etcd reports a lease's time left
// in whole seconds (truncated), so the tracker does not trust single
// readings: a keep-alive resets the lease to its granted TTL, which shows
// as the reading going up; the last such jump before the kill, plus the
// granted TTL, is when the lease expires unless renewed again. Readings
// after the kill (when nothing renews it) bound that estimate.
type leaseTracker struct {
	e      *etcdServer
	prefix string

	mu        sync.Mutex
	holder    string
	lease     clientv3.LeaseID
	granted   time.Duration
	lastTTL   int64
	lastPoll  time.Time
	renewedAt time.Time // middle of the last gap with a jump
	renewals  int
	killedAt  time.Time
	lo, hi    time.Time // bounds on the expiry from readings after the kill
	gone      time.Time // first reading that found the lease revoked
	deleted   time.Time // the watch saw the leader key deleted
	successor time.Time // the watch saw another member write the key
	newLeader string
}

// trackLease starts following the current leader key's lease until ctx
// ends. It fails when there is no leader key.
func trackLease(ctx context.Context, e *etcdServer, prefix string) (*leaseTracker, error) {
	holder, lease, err := e.leaderKey(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if holder == "" || lease == 0 {
		return nil, errors.New("no leader key with a lease to track")
	}
	t := &leaseTracker{e: e, prefix: prefix, holder: holder, lease: lease}
	wch := e.client.Watch(ctx, prefix+"leader")
	go t.watch(wch)
	go t.poll(ctx)
	return t, nil
}

func (t *leaseTracker) watch(wch clientv3.WatchChan) {
	for wr := range wch {
		now := time.Now()
		t.mu.Lock()
		for _, ev := range wr.Events {
			switch {
			case ev.Type == mvccpb.DELETE && t.deleted.IsZero():
				t.deleted = now
			case ev.Type == mvccpb.PUT && string(ev.Kv.Value) != t.holder && t.successor.IsZero():
				t.successor, t.newLeader = now, string(ev.Kv.Value)
			}
		}
		t.mu.Unlock()
	}
}

func (t *leaseTracker) poll(ctx context.Context) {
	tick := time.NewTicker(leasePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		resp, err := t.e.client.TimeToLive(ctx, t.lease)
		recv := time.Now()
		if ctx.Err() != nil {
			return
		}
		t.mu.Lock()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || err == nil && resp.TTL < 0:
			if t.gone.IsZero() {
				t.gone = recv
			}
		case err == nil:
			t.reading(sent, recv, resp.TTL, resp.GrantedTTL)
		}
		gone := !t.gone.IsZero()
		t.mu.Unlock()
		if gone {
			return
		}
	}
}

// reading takes one TimeToLive answer: ttl whole seconds left, evaluated
// by the server between sent and recv.
func (t *leaseTracker) reading(sent, recv time.Time, ttl, granted int64) {
	t.granted = time.Duration(granted) * time.Second
	if !t.lastPoll.IsZero() && ttl > t.lastTTL && t.killedAt.IsZero() {
		t.renewedAt = t.lastPoll.Add(recv.Sub(t.lastPoll) / 2)
		t.renewals++
	}
	t.lastTTL, t.lastPoll = ttl, recv
	if t.killedAt.IsZero() || sent.Before(t.killedAt) {
		return
	}
	// Nothing renews the lease any more: each reading bounds the expiry.
	// Truncation toward zero: ttl >= 1 means [ttl, ttl+1) seconds left.
	if ttl < 1 {
		return
	}
	lo := sent.Add(time.Duration(ttl) * time.Second)
	hi := recv.Add(time.Duration(ttl+1) * time.Second)
	if t.lo.IsZero() || lo.After(t.lo) {
		t.lo = lo
	}
	if t.hi.IsZero() || hi.Before(t.hi) {
		t.hi = hi
	}
}

// markKill records the moment the leader was killed.
func (t *leaseTracker) markKill(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.killedAt = at
}

// leaseResult is what the tracker learnt about one kill.
type leaseResult struct {
	// left is the lease time left at the kill.
	left time.Duration
	// expiry is when the lease expired.
	expiry time.Time
	// deleted is when the watch saw the leader key go (zero if it did not),
	// successor when another member wrote it.
	deleted, successor time.Time
	newLeader          string
}

func (t *leaseTracker) result() leaseResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	var expiry time.Time
	switch {
	case t.renewals > 0:
		expiry = t.renewedAt.Add(t.granted)
	case !t.lo.IsZero() && !t.hi.IsZero():
		// No renewal seen (one every second keeps the whole-second
		// reading flat): the readings after the kill alone pin it.
		expiry = t.lo.Add(t.hi.Sub(t.lo) / 2)
	}
	if !t.lo.IsZero() && expiry.Before(t.lo) {
		expiry = t.lo
	}
	if !t.hi.IsZero() && expiry.After(t.hi) {
		expiry = t.hi
	}
	return leaseResult{
		left: expiry.Sub(t.killedAt), expiry: expiry,
		deleted: t.deleted, successor: t.successor, newLeader: t.newLeader,
	}
}
