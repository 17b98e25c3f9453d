package consul

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// GetCluster reads everything under the cluster prefix with one recursive
// KV read in the configured consistency mode. Paths deeper than
// members/<name>, and keys custos does not know (such as Patroni's legacy
// optime/leader), are ignored.
func (b *Backend) GetCluster(ctx context.Context) (*dcs.Cluster, error) {
	s, err := b.state()
	if err != nil {
		return nil, err
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	pairs, _, err := s.client.KV().List(s.prefix, s.read(octx))
	if err != nil {
		return nil, storeErr(ctx, s, "reading cluster "+s.prefix, err)
	}
	return parseCluster(s.prefix, pairs), nil
}

func parseCluster(prefix string, pairs api.KVPairs) *dcs.Cluster {
	c := &dcs.Cluster{}
	for _, p := range pairs {
		rel, ok := strings.CutPrefix(p.Key, prefix)
		if !ok {
			continue
		}
		value := append([]byte{}, p.Value...)
		switch {
		case rel == dcs.LeaderPath:
			c.Leader = &dcs.Leader{Name: string(p.Value), Version: indexString(p.ModifyIndex), Session: p.Session}
		case strings.HasPrefix(rel, dcs.MembersPath):
			name := strings.TrimPrefix(rel, dcs.MembersPath)
			if name == "" || strings.Contains(name, "/") {
				continue
			}
			c.Members = append(c.Members, dcs.Member{
				Name: name, Data: value, Version: indexString(p.ModifyIndex), Session: p.Session,
			})
		default:
			for _, k := range dcs.Keys {
				if rel == string(k) {
					c.Put(k, &dcs.Value{Data: value, Version: indexString(p.ModifyIndex)})
				}
			}
		}
	}
	return c
}

// CompareAndSet writes a cluster-wide key with ?cas=<ModifyIndex>, cas=0
// (create-only) for an empty version. Consul's PUT answers true or false
// without the new index, so a successful write is read back, as Patroni
// does for its sync key: the ModifyIndex read is returned when the value
// read is the one written. If another client wrote a different value in
// between, the write is no longer current and the result is
// ErrVersionMismatch. A failed compare reads the key to tell a mismatch
// from an absent key.
func (b *Backend) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	s, err := b.state()
	if err != nil {
		return "", err
	}
	path := s.key(string(key))
	var index uint64
	if version != "" {
		if index, err = parseVersion(version); err != nil {
			return "", fmt.Errorf("writing %s: %w", path, err)
		}
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	ok, _, err := s.client.KV().CAS(&api.KVPair{Key: path, Value: data, ModifyIndex: index}, s.write(octx))
	if err != nil {
		return "", storeErr(ctx, s, "writing "+path, err)
	}
	if !ok {
		return "", casFailure(octx, s, "writing", path, version)
	}
	pair, _, err := s.client.KV().Get(path, s.check(octx))
	if err != nil {
		return "", storeErr(ctx, s, "reading back "+path, err)
	}
	if pair == nil || !bytes.Equal(pair.Value, data) {
		return "", fmt.Errorf("writing %s: written, then changed by another client before it could be read back: %w", path, dcs.ErrVersionMismatch)
	}
	return indexString(pair.ModifyIndex), nil
}

// casFailure names why a compare failed.
func casFailure(ctx context.Context, s state, op, path, version string) error {
	if version == "" {
		return fmt.Errorf("%s %s: %w", op, path, dcs.ErrExists)
	}
	pair, _, err := s.client.KV().Get(path, s.check(ctx))
	switch {
	case err != nil:
		return storeErr(ctx, s, op+" "+path+" (reading why the compare failed)", err)
	case pair == nil:
		return fmt.Errorf("%s %s at version %s: %w", op, path, version, dcs.ErrNotFound)
	}
	return fmt.Errorf("%s %s at version %s (now %d): %w", op, path, version, pair.ModifyIndex, dcs.ErrVersionMismatch)
}

// CompareAndDelete deletes a cluster-wide key if its ModifyIndex equals the
// version; an empty version deletes unconditionally. The compare is a
// transaction (check-index, delete): Consul's ?cas delete also succeeds
// when the key is already gone, which the contract calls ErrNotFound.
func (b *Backend) CompareAndDelete(ctx context.Context, key dcs.Key, version string) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	path := s.key(string(key))
	octx, cancel := s.opContext(ctx)
	defer cancel()
	if version == "" {
		if _, err := s.client.KV().Delete(path, s.write(octx)); err != nil {
			return storeErr(ctx, s, "deleting "+path, err)
		}
		return nil
	}
	index, err := parseVersion(version)
	if err != nil {
		return fmt.Errorf("deleting %s: %w", path, err)
	}
	ok, _, _, err := s.client.Txn().Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckIndex, Key: path, Index: index}},
		{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: path}},
	}, s.txn(octx))
	if err != nil {
		return storeErr(ctx, s, "deleting "+path, err)
	}
	if !ok {
		return casFailure(octx, s, "deleting", path, version)
	}
	return nil
}

// Set writes a cluster-wide key unconditionally (a plain PUT, no session).
func (b *Backend) Set(ctx context.Context, key dcs.Key, data []byte) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	path := s.key(string(key))
	octx, cancel := s.opContext(ctx)
	defer cancel()
	if _, err := s.client.KV().Put(&api.KVPair{Key: path, Value: data}, s.write(octx)); err != nil {
		return storeErr(ctx, s, "writing "+path, err)
	}
	return nil
}

// DeleteCluster deletes every key under the cluster prefix (?recurse). The
// prefix ends with a slash, so a scope whose name merely starts the same is
// untouched.
func (b *Backend) DeleteCluster(ctx context.Context) error {
	s, err := b.state()
	if err != nil {
		return err
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	if _, err := s.client.KV().DeleteTree(s.prefix, s.write(octx)); err != nil {
		return storeErr(ctx, s, "deleting cluster "+s.prefix, err)
	}
	return nil
}
