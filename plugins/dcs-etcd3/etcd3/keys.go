package etcd3

import (
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
	resp, err := s.client.Get(octx, s.prefix, clientv3.WithPrefix())
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
	resp, err := s.client.Txn(octx).
		If(cmp).
		Then(clientv3.OpPut(path, string(data))).
		Else(clientv3.OpGet(path, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return "", b.storeErr(ctx, "writing "+path, err)
	}
	b.saw(resp.Header.Revision)
	if !resp.Succeeded {
		return "", casFailure("writing", path, version, resp)
	}
	return revString(resp.Header.Revision), nil
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
		resp, err := s.client.Delete(octx, path)
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
	resp, err := s.client.Txn(octx).
		If(clientv3.Compare(clientv3.ModRevision(path), "=", rev)).
		Then(clientv3.OpDelete(path)).
		Else(clientv3.OpGet(path, clientv3.WithCountOnly())).
		Commit()
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
	resp, err := s.client.Put(octx, path, string(data))
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
	resp, err := s.client.Delete(octx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return b.storeErr(ctx, "deleting cluster "+s.prefix, err)
	}
	b.saw(resp.Header.Revision)
	return nil
}
