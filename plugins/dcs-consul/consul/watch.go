package consul

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Watch timing.
const (
	// watchWait is how long one blocking query waits for a change before
	// Consul answers with the unchanged listing. It bounds how long a dead
	// connection can keep the watch stuck.
	watchWait = time.Minute
	// watchSlack is added to the request deadline beyond watchWait: Consul
	// adds up to watchWait/16 of jitter, then the answer must travel.
	watchSlack = watchWait/16 + 5*time.Second
)

// Watch runs blocking queries on the cluster prefix (?recurse&index=) and
// turns each change of the listing into events: a key that appeared or
// whose ModifyIndex changed is a put, a key that vanished (deleted, or
// dropped with its expired session) a delete, whose version is the index
// the listing was read at. The first listing is the baseline and yields no
// events. It returns nil once ctx is cancelled, and an error wrapping
// dcs.ErrUnavailable when a query fails or the backend is closed: the
// caller then reads the cluster again and re-watches.
func (b *Backend) Watch(ctx context.Context, fn func(dcs.Event)) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.done, cancel)
	defer stop()

	seen := map[string]uint64{}
	var index uint64
	for first := true; ; first = false {
		pairs, meta, err := b.listBlocking(wctx, s, index)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case s.done.Err() != nil:
				return fmt.Errorf("watching %s: %w", s.prefix, errClosed)
			}
			return fmt.Errorf("watching %s: %w: %v", s.prefix, dcs.ErrUnavailable, err)
		}
		index = nextIndex(index, meta.LastIndex)
		events := diff(s.prefix, seen, pairs, meta.LastIndex)
		if first {
			continue
		}
		for _, e := range events {
			if ctx.Err() != nil {
				return nil
			}
			fn(e)
		}
	}
}

// listBlocking lists the prefix, waiting up to watchWait for the index to
// move past index (no wait when it is 0).
func (b *Backend) listBlocking(ctx context.Context, s state, index uint64) (api.KVPairs, *api.QueryMeta, error) {
	qctx, cancel := context.WithTimeout(ctx, watchWait+watchSlack)
	defer cancel()
	q := s.read(qctx)
	q.WaitIndex = index
	q.WaitTime = watchWait
	return s.client.KV().List(s.prefix, q)
}

// nextIndex is the index of the next blocking query, with Consul's rules
// for blocking clients: an index that went backwards (a snapshot restore,
// a new cluster) starts over at 0, and 0 itself must not be waited on.
func nextIndex(prev, got uint64) uint64 {
	if got < prev {
		return 0
	}
	return max(got, 1)
}

// diff updates seen (relative path -> ModifyIndex) to the listing and
// returns the events that lead there: deletes first, by path, then puts
// in the order they were written.
func diff(prefix string, seen map[string]uint64, pairs api.KVPairs, at uint64) []dcs.Event {
	now := make(map[string]uint64, len(pairs))
	var puts []*api.KVPair
	for _, p := range pairs {
		rel, ok := strings.CutPrefix(p.Key, prefix)
		if !ok {
			continue
		}
		now[rel] = p.ModifyIndex
		if old, ok := seen[rel]; !ok || old != p.ModifyIndex {
			puts = append(puts, p)
		}
	}
	var events []dcs.Event
	var gone []string
	for rel := range seen {
		if _, ok := now[rel]; !ok {
			gone = append(gone, rel)
		}
	}
	sort.Strings(gone)
	for _, rel := range gone {
		events = append(events, dcs.Event{Type: dcs.EventDelete, Path: rel, Version: indexString(at)})
		delete(seen, rel)
	}
	sort.SliceStable(puts, func(i, j int) bool { return puts[i].ModifyIndex < puts[j].ModifyIndex })
	for _, p := range puts {
		rel := strings.TrimPrefix(p.Key, prefix)
		events = append(events, dcs.Event{Type: dcs.EventPut, Path: rel, Version: indexString(p.ModifyIndex)})
		seen[rel] = p.ModifyIndex
	}
	return events
}
