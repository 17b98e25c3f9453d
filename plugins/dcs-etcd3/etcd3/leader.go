package etcd3

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// AcquireLeader runs Patroni's leader race: a transaction that puts
// leader=<member> on this member's lease only if the key has never been
// created (create_revision == 0). It returns the key's mod_revision. The
// lease is kept alive first, as by RenewLeader: the caller counts the key's
// lifetime from here.
func (b *Backend) AcquireLeader(ctx context.Context) (string, error) {
	s, err := b.state()
	if err != nil {
		return "", err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var resp *clientv3.TxnResponse
	var lease clientv3.LeaseID
	retried := false
	err = b.withLease(octx, s, refreshAlways, func(id clientv3.LeaseID, _ int64) error {
		lease = id
		return s.retry(octx, func(actx context.Context, again bool) error {
			retried = retried || again
			var err error
			resp, err = s.client.Txn(actx).
				If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, s.member, clientv3.WithLease(id))).
				Else(clientv3.OpGet(key)).
				Commit()
			return err
		})
	})
	if err != nil {
		return "", b.storeErr(ctx, "acquiring leader key "+key, err)
	}
	b.saw(resp.Header.Revision)
	if !resp.Succeeded {
		// An attempt that timed out may have created the key: only this
		// backend writes with its lease, so a key created once with this
		// member's name on it is that attempt's.
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); retried && len(kvs) == 1 &&
			kvs[0].Lease == int64(lease) && string(kvs[0].Value) == s.member &&
			kvs[0].Version == 1 {
			b.logger.Info("an attempt that timed out had acquired the leader key", "key", key)
			return revString(kvs[0].ModRevision), nil
		}
		return "", fmt.Errorf("acquiring leader key %s: %w", key, dcs.ErrExists)
	}
	return revString(resp.Header.Revision), nil
}

// RenewLeader keeps the lease alive with one keep-alive, every time: the
// caller counts the leader key's lifetime from its return, and the key lives
// at least one TTL after that keep-alive. When the watch cache holds every
// change up to the keep-alive's revision and shows the leader key with this
// member's name on this lease, that is all: the key is not rewritten and its
// mod_revision stays, as in Patroni. Otherwise (the cache is behind, the
// lease was granted anew, or the key is gone or someone else's) one
// transaction checks the key is still this member's on this lease, else
// rewrites it if it holds this member's name, or else creates it if absent;
// when neither applies another member holds it (ErrVersionMismatch).
//
// The keep-alive is the last request of the usual case and the cache check
// after it takes no request, so the caller's clock starts right after etcd
// refreshed the lease.
func (b *Backend) RenewLeader(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	mine := clientv3.Compare(clientv3.Value(key), "=", s.member)
	absent := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	var resp *clientv3.TxnResponse
	err = b.withLease(octx, s, refreshAlways, func(id clientv3.LeaseID, rev int64) error {
		if rev > 0 && s.cache.current(key, []byte(s.member), id, rev) {
			resp = nil
			return nil
		}
		// The transaction checks its own effect: repeated after an attempt
		// that timed out, it finds the key already moved or created.
		put := clientv3.OpPut(key, s.member, clientv3.WithLease(id))
		return s.retry(octx, func(actx context.Context, _ bool) error {
			var err error
			resp, err = s.client.Txn(actx).
				If(mine, clientv3.Compare(clientv3.LeaseValue(key), "=", id)).
				Else(clientv3.OpTxn([]clientv3.Cmp{mine}, []clientv3.Op{put},
					[]clientv3.Op{clientv3.OpTxn([]clientv3.Cmp{absent}, []clientv3.Op{put}, nil)})).
				Commit()
			return err
		})
	})
	if err != nil {
		return b.storeErr(ctx, "renewing leader key "+key, err)
	}
	if resp == nil {
		return nil
	}
	b.saw(resp.Header.Revision)
	if resp.Succeeded {
		return nil
	}
	rewrite := resp.Responses[0].GetResponseTxn()
	if rewrite.GetSucceeded() {
		b.logger.Info("leader key moved to the current lease", "key", key)
		return nil
	}
	if len(rewrite.GetResponses()) > 0 && rewrite.GetResponses()[0].GetResponseTxn().GetSucceeded() {
		b.logger.Info("leader key was gone; created it again", "key", key)
		return nil
	}
	return fmt.Errorf("renewing leader key %s: held by another member: %w", key, dcs.ErrVersionMismatch)
}

// TakeLeader writes leader=<member> on this member's lease unconditionally.
func (b *Backend) TakeLeader(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	err = b.withLease(octx, s, refreshAlways, func(id clientv3.LeaseID, _ int64) error {
		return s.retry(octx, func(actx context.Context, _ bool) error {
			resp, err := s.client.Put(actx, key, s.member, clientv3.WithLease(id))
			if err == nil {
				b.saw(resp.Header.Revision)
			}
			return err
		})
	})
	if err != nil {
		return b.storeErr(ctx, "taking leader key "+key, err)
	}
	return nil
}

// DeleteLeader deletes the leader key if it holds this member's name. The
// lease stays: the member key lives on it.
func (b *Backend) DeleteLeader(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var resp *clientv3.TxnResponse
	err = s.retry(octx, func(actx context.Context, _ bool) error {
		var err error
		resp, err = s.client.Txn(actx).
			If(clientv3.Compare(clientv3.Value(key), "=", s.member)).
			Then(clientv3.OpDelete(key)).
			Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
			Commit()
		return err
	})
	if err != nil {
		return b.storeErr(ctx, "deleting leader key "+key, err)
	}
	b.saw(resp.Header.Revision)
	if resp.Succeeded || resp.Responses[0].GetResponseRange().GetCount() == 0 {
		return nil
	}
	return fmt.Errorf("deleting leader key %s: held by another member: %w", key, dcs.ErrVersionMismatch)
}

// TouchMember writes members/<member> on this member's lease, and keeps the
// lease alive when its last refresh is older than ttl/3 (a leader's
// RenewLeader refreshed it moments before; a replica refreshes it every
// few cycles). The write is skipped when the watch cache, holding every
// change up to the newest revision this backend has seen (including that of
// the keep-alive just sent), shows the key with exactly this value on this
// lease, as Patroni skips it. A lease granted anew never matches, so the key
// is written again after the lease expired.
func (b *Backend) TouchMember(ctx context.Context, data []byte) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.MembersPath + s.member)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	err = b.withLease(octx, s, refreshWhenAged, func(id clientv3.LeaseID, _ int64) error {
		if s.cache.current(key, data, id, 0) {
			seen, _ := b.seenRev()
			if s.cache.reach(octx, seen, memberWait) && s.cache.current(key, data, id, seen) {
				return nil
			}
		}
		return s.retry(octx, func(actx context.Context, _ bool) error {
			resp, err := s.client.Put(actx, key, string(data), clientv3.WithLease(id))
			if err == nil {
				b.saw(resp.Header.Revision)
			}
			return err
		})
	})
	if err != nil {
		return b.storeErr(ctx, "writing member key "+key, err)
	}
	return nil
}
