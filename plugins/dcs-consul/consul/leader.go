package consul

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// lockTxn runs a transaction of ops ending with a lock (acquire) by a
// session, and returns the ModifyIndex the lock left on the key. A failed
// op before the lock (a check: the key exists, or its index changed) is
// errTxnPrecondition; a refused lock is errLockFailed.
func lockTxn(ctx context.Context, s state, op string, ops api.TxnOps) (uint64, error) {
	ok, resp, _, err := s.client.Txn().Txn(ops, s.txn(ctx))
	if err != nil {
		return 0, storeErr(ctx, s, op, err)
	}
	if !ok {
		if resp == nil {
			return 0, fmt.Errorf("%s: %w (no reason given)", op, errLockFailed)
		}
		if len(resp.Errors) > 0 && resp.Errors[0].OpIndex < len(ops)-1 {
			return 0, fmt.Errorf("%s: %w (%s)", op, errTxnPrecondition, resp.Errors[0].What)
		}
		what := "no reason given"
		if len(resp.Errors) > 0 {
			what = resp.Errors[0].What
		}
		return 0, fmt.Errorf("%s: %w (%s)", op, errLockFailed, what)
	}
	if n := len(resp.Results); n > 0 && resp.Results[n-1].KV != nil {
		return resp.Results[n-1].KV.ModifyIndex, nil
	}
	return 0, fmt.Errorf("%s: %w: the transaction returned no result", op, dcs.ErrUnavailable)
}

// errTxnPrecondition is a check that failed before the lock in lockTxn.
var errTxnPrecondition = fmt.Errorf("precondition failed: %w", dcs.ErrVersionMismatch)

func lockOp(key, member, session string) *api.TxnOp {
	return &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVLock, Key: key, Value: []byte(member), Session: session}}
}

// acquire runs Patroni's leader race atomically: one transaction that
// checks that the leader key does not exist and creates it locked by the
// session (Consul's ?acquire alone would also take a key that exists
// without a holder, or that this session holds already).
func acquire(ctx context.Context, s state, key, session string) (uint64, error) {
	idx, err := lockTxn(ctx, s, "acquiring leader key "+key, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: key}},
		lockOp(key, s.member, session),
	})
	if err != nil && isPrecondition(err) {
		return 0, fmt.Errorf("acquiring leader key %s: %w", key, dcs.ErrExists)
	}
	return idx, err
}

func isPrecondition(err error) bool { return errors.Is(err, errTxnPrecondition) }

// AcquireLeader creates leader=<member> locked by this member's session,
// only if the key does not exist. It returns the key's ModifyIndex.
func (b *Backend) AcquireLeader(ctx context.Context) (string, error) {
	s, err := b.state()
	if err != nil {
		return "", err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var idx uint64
	err = b.withSession(octx, s, func(session string) error {
		var err error
		idx, err = acquire(octx, s, key, session)
		return err
	})
	if err != nil {
		return "", err
	}
	return indexString(idx), nil
}

// maxMoves bounds how often RenewLeader and DeleteLeader read the leader
// key again after it changed between their read and their write.
const maxMoves = 3

// RenewLeader renews this member's session. When the leader key already
// holds this member's name under that session, that is all: the key is
// not rewritten and its ModifyIndex stays, as in Patroni. When it holds
// this member's name under another session (a previous session of this
// member: the plugin restarted, or the TTL changed) one transaction
// deletes it at the index read and creates it again locked by the current
// session. When it is gone it is acquired as by AcquireLeader. When it
// holds another name, nothing changes (ErrVersionMismatch).
func (b *Backend) RenewLeader(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	return b.withSession(octx, s, func(session string) error {
		for range maxMoves {
			pair, _, err := s.client.KV().Get(key, s.check(octx))
			if err != nil {
				return storeErr(ctx, s, "reading leader key "+key, err)
			}
			switch {
			case pair == nil:
				if _, err := acquire(octx, s, key, session); err != nil {
					return err
				}
				b.logger.Info("leader key was gone; created it again", "key", key)
				return nil
			case string(pair.Value) != s.member:
				return fmt.Errorf("renewing leader key %s: held by %q: %w", key, pair.Value, dcs.ErrVersionMismatch)
			case pair.Session == session:
				return nil
			}
			_, err = lockTxn(octx, s, "moving leader key "+key+" onto session "+session, api.TxnOps{
				{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: key, Index: pair.ModifyIndex}},
				lockOp(key, s.member, session),
			})
			if isPrecondition(err) {
				continue // changed since the read: look again
			}
			if err != nil {
				return err
			}
			b.logger.Info("leader key moved onto the current session", "key", key, "session", session, "old_session", pair.Session)
			return nil
		}
		return fmt.Errorf("renewing leader key %s: it changed %d times while being renewed: %w", key, maxMoves, dcs.ErrUnavailable)
	})
}

// TakeLeader writes leader=<member> locked by this member's session
// unconditionally: one transaction deletes whatever is there and creates
// the key.
func (b *Backend) TakeLeader(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	return b.withSession(octx, s, func(session string) error {
		_, err := lockTxn(octx, s, "taking leader key "+key, api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: key}},
			lockOp(key, s.member, session),
		})
		return err
	})
}

// DeleteLeader deletes the leader key if it holds this member's name, with
// ?cas=<ModifyIndex> of the read that saw the name. The session stays: the
// member key lives on it.
func (b *Backend) DeleteLeader(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.LeaderPath)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	for range maxMoves {
		pair, _, err := s.client.KV().Get(key, s.check(octx))
		if err != nil {
			return storeErr(ctx, s, "reading leader key "+key, err)
		}
		if pair == nil {
			return nil
		}
		if string(pair.Value) != s.member {
			return fmt.Errorf("deleting leader key %s: held by %q: %w", key, pair.Value, dcs.ErrVersionMismatch)
		}
		// Consul's delete-cas also succeeds when the key is already gone.
		ok, _, err := s.client.KV().DeleteCAS(&api.KVPair{Key: key, ModifyIndex: pair.ModifyIndex}, s.write(octx))
		if err != nil {
			return storeErr(ctx, s, "deleting leader key "+key, err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("deleting leader key %s: it changed %d times while being deleted: %w", key, maxMoves, dcs.ErrUnavailable)
}

// TouchMember writes members/<member> locked by this member's session
// (?acquire), which it renews first. A member key held by another session
// (a previous session of this member) is deleted and acquired again, as
// Patroni does; only this member writes its key. With register_service,
// the member is then registered as a Consul service from the data.
func (b *Backend) TouchMember(ctx context.Context, data []byte) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	key := s.key(dcs.MembersPath + s.member)
	octx, cancel := s.opContext(ctx)
	defer cancel()
	err = b.withSession(octx, s, func(session string) error {
		pair := &api.KVPair{Key: key, Value: data, Session: session}
		ok, _, err := s.client.KV().Acquire(pair, s.write(octx))
		if err != nil {
			return storeErr(ctx, s, "writing member key "+key, err)
		}
		if ok {
			return nil
		}
		b.logger.Info("member key held by another session; writing it again", "key", key, "session", session)
		if _, err := s.client.KV().Delete(key, s.write(octx)); err != nil {
			return storeErr(ctx, s, "deleting member key "+key, err)
		}
		ok, _, err = s.client.KV().Acquire(pair, s.write(octx))
		if err != nil {
			return storeErr(ctx, s, "writing member key "+key, err)
		}
		if !ok {
			return fmt.Errorf("writing member key %s: %w", key, errLockFailed)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.cfg.RegisterService || b.registered() {
		b.updateService(octx, s, data)
	}
	return nil
}
