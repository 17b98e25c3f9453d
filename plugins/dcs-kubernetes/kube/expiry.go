package kube

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// observations remembers, per record (the leader record, each member
// record), when this process first saw it in its current form, on its own
// monotonic clock. Kubernetes has no TTL on objects: like Patroni, a reader
// counts a record as alive only while it has changed within the last TTL of
// its own time, so that clocks are never compared across machines.
//
// A record seen for the first time counts from that moment: a reader that
// starts late gives a stale leader one more TTL, never less.
type observations struct {
	mu   sync.Mutex
	seen map[string]observation
}

type observation struct {
	record string
	rv     string
	at     time.Time
}

func newObservations() *observations {
	return &observations{seen: map[string]observation{}}
}

// observe records the record of the object at resourceVersion rv as seen at
// now and returns since when it has been seen unchanged. An observation
// older than the one stored (a lower resourceVersion, from a slow list or a
// lagging watch) changes nothing.
func (o *observations) observe(id, rv, record string, now time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	prev, ok := o.seen[id]
	switch {
	case ok && prev.record == record:
		if newerRV(rv, prev.rv) {
			prev.rv = rv
			o.seen[id] = prev
		}
		return prev.at
	case ok && newerRV(prev.rv, rv):
		return prev.at
	}
	o.seen[id] = observation{record: record, rv: rv, at: now}
	return now
}

// forget drops a record that is gone (its object was deleted); seen again,
// it counts from then.
func (o *observations) forget(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.seen, id)
}

// retain drops the observations under prefix that keep rejects: records
// whose objects a complete read no longer shows.
func (o *observations) retain(prefix string, keep func(id string) bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id := range o.seen {
		if strings.HasPrefix(id, prefix) && !keep(id) {
			delete(o.seen, id)
		}
	}
}

// newerRV reports whether resourceVersion a is newer than b. Kubernetes
// resourceVersions are etcd revisions; when either does not parse as one,
// nothing is assumed.
func newerRV(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x > y
}

// alive reports whether a record seen unchanged since `since` is still
// alive at now under ttl, and until when.
func alive(since time.Time, ttl time.Duration, now time.Time) (bool, time.Time) {
	until := since.Add(ttl)
	return now.Before(until), until
}

// recordTTL is the TTL a leader record announces in its ttl annotation
// (whole seconds, as Patroni writes it), or fallback when it has none.
func recordTTL(ann map[string]string, fallback time.Duration) time.Duration {
	v := strings.TrimSpace(ann[annTTL])
	if v == "" {
		return fallback
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || secs <= 0 {
		return fallback
	}
	return time.Duration(secs * float64(time.Second))
}

// Observation ids.
const (
	leaderID       = "leader"
	memberIDPrefix = "members/"
)
