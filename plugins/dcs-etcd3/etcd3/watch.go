package etcd3

import (
	"context"
	"fmt"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Watch streams the changes under the cluster prefix from the backend's one
// etcd watch (the watch cache's), starting after the revision the cache has
// reached when the call subscribes; it first waits, within the retry
// timeout, for the cache to be in sync. Lease expiry shows up as delete
// events. It returns nil once ctx is cancelled, and an error wrapping
// dcs.ErrUnavailable when the watch breaks (lost connection or quorum,
// compaction, the backend closed): the caller then reads the cluster again
// and re-watches.
func (b *Backend) Watch(ctx context.Context, fn func(dcs.Event)) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	octx, cancel := s.opContext(ctx)
	sub, err := s.cache.subscribe(octx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watching %s: waiting for the watch cache: %w: %v", s.prefix, dcs.ErrUnavailable, err)
	}
	defer s.cache.unsubscribe(sub)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.wake:
		}
		events, err := sub.take()
		for _, e := range events {
			if ctx.Err() != nil {
				return nil
			}
			fn(e)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watching %s: %w", s.prefix, err)
		}
	}
}
