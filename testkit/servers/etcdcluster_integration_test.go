//go:build integration

package servers

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// TestEtcdCluster: three members form one cluster with one leader; with
// the leader frozen the two others elect another; with two frozen the last
// one is not healthy (no quorum); thawed, all are. Stop removes the files.
func TestEtcdCluster(t *testing.T) {
	c, err := StartEtcdCluster(EtcdConfig{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if n := len(c.Endpoints()); n != 3 {
		t.Fatalf("%d endpoints", n)
	}
	client, closeClient := newHTTPClient(nil)
	defer closeClient()
	healthy := func(e *Etcd) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := httpGet(ctx, client, e.ClientURL()+"/health", "")
		return err
	}
	lead := -1
	poll.Eventually(t, 10*time.Second, "one etcd member to lead", func() error {
		if lead = c.Leader(context.Background(), 2*time.Second); lead < 0 {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	first := c.Members[lead]
	if err := first.Freeze(); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 30*time.Second, "another member to lead", func() error {
		for i, m := range c.Members {
			if i == lead {
				continue
			}
			if ok, err := m.IsLeader(context.Background()); err == nil && ok {
				return healthy(m)
			}
		}
		return fmt.Errorf("no other leader")
	})
	second := c.Members[(lead+1)%3]
	if err := second.Freeze(); err != nil {
		t.Fatal(err)
	}
	last := c.Members[(lead+2)%3]
	poll.Eventually(t, 30*time.Second, "the last member to lose its quorum", func() error {
		if healthy(last) == nil {
			return fmt.Errorf("%s is healthy alone", last.Endpoint)
		}
		return nil
	})
	for _, m := range []*Etcd{first, second} {
		if err := m.Thaw(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range c.Members {
		poll.Eventually(t, 30*time.Second, m.Endpoint+" to be healthy again", func() error { return healthy(m) })
	}
	dir := c.ws.dir
	c.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", dir, err)
	}
}
