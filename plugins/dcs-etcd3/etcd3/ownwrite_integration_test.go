//go:build integration

package etcd3

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/testkit/servers"
)

// TestOwnWrite checks the read-back of CompareAndSet after an attempt that
// timed out: a failed compare counts as the call's own write only when the
// key holds the call's data from the one change since the version compared.
func TestOwnWrite(t *testing.T) {
	srv, err := servers.StartEtcd(servers.EtcdConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := New(nil)
	err = b.Configure(ctx, dcs.ConfigureRequest{
		Scope: "pg", Namespace: "ownwrite", Member: "m1", TTL: 10 * time.Second, RetryTimeout: 2 * time.Second,
		Config: []byte(fmt.Sprintf(`{"hosts": [%q]}`, srv.Endpoint)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	s, err := b.state()
	if err != nil {
		t.Fatal(err)
	}
	path := s.key(string(dcs.KeyConfig))

	// replay repeats CompareAndSet's transaction for data at version, as
	// the attempt after one that timed out does, and reads back.
	replay := func(data, version string) int64 {
		t.Helper()
		cmp := clientv3.Compare(clientv3.CreateRevision(path), "=", 0)
		if version != "" {
			cmp = clientv3.Compare(clientv3.ModRevision(path), "=", rev(t, version))
		}
		resp, err := s.client.Txn(ctx).If(cmp).Then(clientv3.OpPut(path, data)).Else(clientv3.OpGet(path)).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Succeeded {
			t.Fatalf("replay of %q at %q wrote", data, version)
		}
		got, err := b.ownWrite(ctx, s, path, []byte(data), version, resp)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	v1, err := b.CompareAndSet(ctx, dcs.KeyConfig, []byte("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := replay("a", ""); revString(got) != v1 {
		t.Errorf("create replayed: own write at %d, want %s", got, v1)
	}
	if got := replay("b", ""); got != 0 {
		t.Errorf("create of other data replayed: own write at %d, want none", got)
	}
	v2, err := b.CompareAndSet(ctx, dcs.KeyConfig, []byte("b"), v1)
	if err != nil {
		t.Fatal(err)
	}
	if got := replay("b", v1); revString(got) != v2 {
		t.Errorf("update replayed: own write at %d, want %s", got, v2)
	}
	if got := replay("c", v1); got != 0 {
		t.Errorf("update with other data replayed: own write at %d, want none", got)
	}
	if got := replay("b", ""); got != 0 {
		t.Errorf("create replayed on an updated key: own write at %d, want none", got)
	}
	// Overwritten since (with the same data): not provably this call's.
	if _, err := b.CompareAndSet(ctx, dcs.KeyConfig, []byte("b"), v2); err != nil {
		t.Fatal(err)
	}
	if got := replay("b", v1); got != 0 {
		t.Errorf("update replayed after another write: own write at %d, want none", got)
	}
}

func rev(t *testing.T, version string) int64 {
	t.Helper()
	r, err := parseVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
