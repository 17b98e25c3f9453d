package etcd3

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// GetCluster reads everything under the cluster prefix. It answers from the
// watch cache once the cache has proved, by the answer to a progress request
// sent now on its watch stream, that it holds every change etcd had made
// when the call began, and every revision this backend has written or read;
// otherwise (the cache is not in sync, etcd does not answer within
// syncWait, or this backend's last request to etcd failed) it reads the
// prefix with one linearizable Range. Paths deeper
// than members/<name>, and keys custos does not know (such as Patroni's
// legacy optime/leader), are ignored.
func (b *Backend) GetCluster(ctx context.Context) (*dcs.Cluster, error) {
	s, err := b.state()
	if err != nil {
		return nil, err
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	if seen, failing := b.seenRev(); !failing {
		if kvs, ok := s.cache.read(octx, seen); ok {
			return parseCluster(s.prefix, kvs), nil
		}
	}
	var resp *clientv3.GetResponse
	err = s.retry(octx, func(actx context.Context, _ bool) error {
		var err error
		resp, err = s.client.Get(actx, s.prefix, clientv3.WithPrefix())
		return err
	})
	if err != nil {
		return nil, b.storeErr(ctx, "reading cluster "+s.prefix, err)
	}
	b.saw(resp.Header.Revision)
	return parseCluster(s.prefix, resp.Kvs), nil
}

func parseCluster(prefix string, kvs []*mvccpb.KeyValue) *dcs.Cluster {
	c := &dcs.Cluster{}
	for _, kv := range kvs {
		rel := strings.TrimPrefix(string(kv.Key), prefix)
		switch {
		case rel == dcs.LeaderPath:
			c.Leader = &dcs.Leader{
				Name:    string(kv.Value),
				Version: revString(kv.ModRevision),
				Session: leaseString(clientv3.LeaseID(kv.Lease)),
			}
		case strings.HasPrefix(rel, dcs.MembersPath):
			name := strings.TrimPrefix(rel, dcs.MembersPath)
			if name == "" || strings.Contains(name, "/") {
				continue
			}
			c.Members = append(c.Members, dcs.Member{
				Name:    name,
				Data:    append([]byte{}, kv.Value...),
				Version: revString(kv.ModRevision),
				Session: leaseString(clientv3.LeaseID(kv.Lease)),
			})
		default:
			for _, k := range dcs.Keys {
				if rel == string(k) {
					c.Put(k, &dcs.Value{Data: append([]byte{}, kv.Value...), Version: revString(kv.ModRevision)})
				}
			}
		}
	}
	return c
}

// CompareAndSet writes a cluster-wide key in a transaction: create-only
// (create_revision == 0) for an empty version, else only if the key's
// mod_revision equals the version. A failed compare reads the key in the
// same transaction to tell a mismatch from an absent key.
//
// An attempt that timed out may have landed, so that the next attempt's
// compare fails on this very write: then the write counts as done only when
// the key proves it (see ownWrite); otherwise the failure is reported, never
// a success that is not known.
func (b *Backend) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	s, err := b.state()
	if err != nil {
		return "", err
	}
	path := s.key(string(key))
	var cmp clientv3.Cmp
	if version == "" {
		cmp = clientv3.Compare(clientv3.CreateRevision(path), "=", 0)
	} else {
		rev, err := parseVersion(version)
		if err != nil {
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
		cmp = clientv3.Compare(clientv3.ModRevision(path), "=", rev)
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var resp *clientv3.TxnResponse
	retried := false
	err = s.retry(octx, func(actx context.Context, again bool) error {
		retried = retried || again
		var err error
		resp, err = s.client.Txn(actx).
			If(cmp).
			Then(clientv3.OpPut(path, string(data))).
			Else(clientv3.OpGet(path)).
			Commit()
		return err
	})
	if err != nil {
		return "", b.storeErr(ctx, "writing "+path, err)
	}
	b.saw(resp.Header.Revision)
	if !resp.Succeeded {
		if retried {
			rev, err := b.ownWrite(octx, s, path, data, version, resp)
			if err != nil {
				return "", b.storeErr(ctx, "writing "+path+": reading back an attempt that timed out", err)
			}
			if rev > 0 {
				b.logger.Info("an attempt that timed out had written the key", "key", path, "version", rev)
				return revString(rev), nil
			}
		}
		return "", casFailure("writing", path, version, resp)
	}
	return revString(resp.Header.Revision), nil
}

// ownWrite tells whether the key a compare of CompareAndSet failed on holds
// the write of an earlier attempt, and returns its mod_revision then (0
// when not). That is so when the key holds exactly data, written by the one
// change since the version compared (for a create: the key was created
// with data and never changed since), which the key's history shows. The
// write then is this call's own, or an identical write from the same
// version by another client, which leaves the store as this call's would
// have. A write of this call that was overwritten since is reported as
// failed: a failure claims nothing.
func (b *Backend) ownWrite(ctx context.Context, s state, path string, data []byte, version string, resp *clientv3.TxnResponse) (int64, error) {
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) != 1 || !bytes.Equal(kvs[0].Value, data) {
		return 0, nil
	}
	kv := kvs[0]
	if version == "" {
		if kv.CreateRevision == kv.ModRevision && kv.Version == 1 {
			return kv.ModRevision, nil
		}
		return 0, nil
	}
	want, err := parseVersion(version)
	if err != nil || kv.ModRevision <= want {
		return 0, nil
	}
	var prev *clientv3.GetResponse
	err = s.retry(ctx, func(actx context.Context, _ bool) error {
		var err error
		prev, err = s.client.Get(actx, path, clientv3.WithRev(kv.ModRevision-1))
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(prev.Kvs) == 1 && prev.Kvs[0].ModRevision == want &&
		prev.Kvs[0].CreateRevision == kv.CreateRevision && prev.Kvs[0].Version+1 == kv.Version {
		return kv.ModRevision, nil
	}
	return 0, nil
}

// casFailure names why a compare failed; the else branch of the
// transaction is a count of the key.
func casFailure(op, path, version string, resp *clientv3.TxnResponse) error {
	present := resp.Responses[0].GetResponseRange().GetCount() > 0
	switch {
	case version == "":
		return fmt.Errorf("%s %s: %w", op, path, dcs.ErrExists)
	case !present:
		return fmt.Errorf("%s %s at version %s: %w", op, path, version, dcs.ErrNotFound)
	}
	return fmt.Errorf("%s %s at version %s: %w", op, path, version, dcs.ErrVersionMismatch)
}

// CompareAndDelete deletes a cluster-wide key if its mod_revision equals
// the version; an empty version deletes unconditionally.
func (b *Backend) CompareAndDelete(ctx context.Context, key dcs.Key, version string) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	path := s.key(string(key))
	octx, cancel := s.opContext(ctx)
	defer cancel()
	if version == "" {
		var resp *clientv3.DeleteResponse
		err := s.retry(octx, func(actx context.Context, _ bool) error {
			var err error
			resp, err = s.client.Delete(actx, path)
			return err
		})
		if err != nil {
			return b.storeErr(ctx, "deleting "+path, err)
		}
		b.saw(resp.Header.Revision)
		return nil
	}
	rev, err := parseVersion(version)
	if err != nil {
		return fmt.Errorf("deleting %s: %w", path, err)
	}
	// An attempt that timed out may have deleted the key, so that the next
	// one finds it absent: reported as not found, which claims nothing.
	var resp *clientv3.TxnResponse
	err = s.retry(octx, func(actx context.Context, _ bool) error {
		var err error
		resp, err = s.client.Txn(actx).
			If(clientv3.Compare(clientv3.ModRevision(path), "=", rev)).
			Then(clientv3.OpDelete(path)).
			Else(clientv3.OpGet(path, clientv3.WithCountOnly())).
			Commit()
		return err
	})
	if err != nil {
		return b.storeErr(ctx, "deleting "+path, err)
	}
	b.saw(resp.Header.Revision)
	if !resp.Succeeded {
		return casFailure("deleting", path, version, resp)
	}
	return nil
}

// Set writes a cluster-wide key unconditionally (a plain put, no lease).
func (b *Backend) Set(ctx context.Context, key dcs.Key, data []byte) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	path := s.key(string(key))
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var resp *clientv3.PutResponse
	err = s.retry(octx, func(actx context.Context, _ bool) error {
		var err error
		resp, err = s.client.Put(actx, path, string(data))
		return err
	})
	if err != nil {
		return b.storeErr(ctx, "writing "+path, err)
	}
	b.saw(resp.Header.Revision)
	return nil
}

// DeleteCluster deletes every key under the cluster prefix. The prefix ends
// with a slash, so a scope whose name merely starts the same is untouched.
func (b *Backend) DeleteCluster(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var resp *clientv3.DeleteResponse
	err = s.retry(octx, func(actx context.Context, _ bool) error {
		var err error
		resp, err = s.client.Delete(actx, s.prefix, clientv3.WithPrefix())
		return err
	})
	if err != nil {
		return b.storeErr(ctx, "deleting cluster "+s.prefix, err)
	}
	b.saw(resp.Header.Revision)
	return nil
}
