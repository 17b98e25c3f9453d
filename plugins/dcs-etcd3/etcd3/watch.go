package etcd3

import (
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Watch streams the changes under the cluster prefix, starting right after
// the store's current revision. Lease expiry shows up as delete events. It
// returns nil once ctx is cancelled, and an error wrapping
// dcs.ErrUnavailable when the watch breaks (compaction, lost quorum, the
// client closed): the caller then reads the cluster again and re-watches.
func (b *Backend) Watch(ctx context.Context, fn func(dcs.Event)) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	octx, cancel := s.opContext(ctx)
	resp, err := s.client.Get(octx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return b.storeErr(ctx, "reading the revision to watch "+s.prefix+" from", err)
	}
	start := resp.Header.Revision + 1

	// WithRequireLeader ends the watch when the etcd member it runs on loses
	// quorum, instead of leaving it silently stuck on a partitioned member.
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	ch := s.client.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(start))
	for wr := range ch {
		if ctx.Err() != nil {
			return nil
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watching %s: %w: %v", s.prefix, dcs.ErrUnavailable, err)
		}
		for _, ev := range wr.Events {
			e := dcs.Event{
				Path:    strings.TrimPrefix(string(ev.Kv.Key), s.prefix),
				Version: revString(ev.Kv.ModRevision),
			}
			switch ev.Type {
			case mvccpb.PUT:
				e.Type = dcs.EventPut
			case mvccpb.DELETE:
				e.Type = dcs.EventDelete
			default:
				continue
			}
			fn(e)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("watching %s: %w", s.prefix, errWatchClosed)
}

var errWatchClosed = fmt.Errorf("watch closed (client closed or connection lost): %w", dcs.ErrUnavailable)
