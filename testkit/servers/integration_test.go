//go:build integration

package servers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// TestEtcdLifecycle: a started etcd serves, a frozen one does not answer
// until thawed, a killed one comes back on the same port with Restart, and
// Stop removes the directory the launcher made.
func TestEtcdLifecycle(t *testing.T) {
	e, err := StartEtcd(EtcdConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	client, closeClient := newHTTPClient(nil)
	defer closeClient()
	health := func(within time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		_, err := httpGet(ctx, client, e.ClientURL()+"/health", "")
		return err
	}
	if err := health(5 * time.Second); err != nil {
		t.Fatalf("a started etcd: %v", err)
	}
	if err := e.Freeze(); err != nil {
		t.Fatal(err)
	}
	if err := health(500 * time.Millisecond); err == nil {
		t.Fatal("a frozen etcd answered")
	}
	if err := e.Thaw(); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, "the thawed etcd answers", func() error { return health(time.Second) })
	e.Kill()
	if err := e.Freeze(); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("freezing a killed etcd: %v, want an error saying it is not running", err)
	}
	if err := e.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := health(5 * time.Second); err != nil {
		t.Fatalf("a restarted etcd: %v", err)
	}
}

// TestZooKeeper: a started server answers four-letter words and restarts
// on the same port.
func TestZooKeeper(t *testing.T) {
	z, err := StartZooKeeper(ZooKeeperConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Stop)
	if out, err := z.FourLetter("ruok"); err != nil || out != "imok" {
		t.Fatalf("ruok: %q, %v", out, err)
	}
	if err := z.Restart(); err != nil {
		t.Fatal(err)
	}
	if out, err := z.FourLetter("ruok"); err != nil || out != "imok" {
		t.Fatalf("ruok after the restart: %q, %v", out, err)
	}
}
