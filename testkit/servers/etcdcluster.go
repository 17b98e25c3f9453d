package servers

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EtcdCluster is a throwaway etcd cluster of several members, each in its
// own process on loopback ports, so that one member can be killed or
// frozen and the majority lost. Every member is an *Etcd: Kill, Freeze,
// Thaw and Restart work on it as on a single server (a restarted member
// rejoins with its data; Restart waits until it is healthy, which needs a
// majority).
type EtcdCluster struct {
	Members []*Etcd
	ws      workspace
}

// Endpoints are the members' client addresses, "127.0.0.1:<port>".
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.Endpoint
	}
	return out
}

// StartEtcdCluster starts an etcd cluster of n members (named
// <cfg.Name>-1, -2, ...) and waits until every member is healthy, which
// means the cluster elected a leader. cfg is read as by StartEtcd; its Dir,
// when set, holds one subdirectory per member. Stop it with Stop.
func StartEtcdCluster(cfg EtcdConfig, n int) (*EtcdCluster, error) {
	if n < 1 {
		return nil, errors.New("etcd cluster: at least one member")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c, ws, err := launch("etcd-cluster", cfg.Dir, func(dir string) (*EtcdCluster, error) { return startEtcdCluster(cfg, n, dir) })
	if err != nil {
		return nil, err
	}
	c.ws = ws
	return c, nil
}

func startEtcdCluster(cfg EtcdConfig, n int, dir string) (*EtcdCluster, error) {
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	names := make([]string, n)
	var initial []string
	for i := range n {
		names[i] = cfg.Name + "-" + strconv.Itoa(i+1)
		initial = append(initial, names[i]+"=http://127.0.0.1:"+strconv.Itoa(ports[2*i+1]))
	}
	c := &EtcdCluster{}
	for i := range n {
		client := "http://127.0.0.1:" + strconv.Itoa(ports[2*i])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1])
		mdir := filepath.Join(dir, names[i])
		// A token of this cluster's own (its first port): members of
		// another cluster that later got these ports refuse its peers.
		token := cfg.Name + "-" + strconv.Itoa(ports[0])
		args := append(etcdArgs(cfg, names[i], mdir, client, peer, strings.Join(initial, ",")), "--initial-cluster-token", token)
		if err := os.MkdirAll(mdir, 0o700); err != nil {
			return nil, err
		}
		c.Members = append(c.Members, &Etcd{
			Endpoint: "127.0.0.1:" + strconv.Itoa(ports[2*i]),
			proc:     &process{name: names[i], bin: cfg.Bin, args: args, logPath: filepath.Join(mdir, "etcd.log")},
		})
	}
	// Every member must run before any can be healthy: a member alone has
	// no quorum.
	for _, m := range c.Members {
		if err := m.proc.start(); err != nil {
			c.kill()
			return nil, err
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.waitHealthy() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

func (c *EtcdCluster) kill() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// Stop kills every member (thawing none: SIGKILL ends a stopped process
// too) and removes the directory StartEtcdCluster made.
func (c *EtcdCluster) Stop() {
	c.kill()
	c.ws.remove()
}

// Leader is the index of the member that says it leads the cluster
// (etcd_server_is_leader in its metrics), -1 when none answers so within
// timeout. A frozen member does not answer.
func (c *EtcdCluster) Leader(ctx context.Context, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for i, m := range c.Members {
		if ok, err := m.IsLeader(ctx); err == nil && ok {
			return i
		}
	}
	return -1
}

// IsLeader reports whether the member leads its cluster, from its metrics.
func (e *Etcd) IsLeader(ctx context.Context) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.ClientURL()+"/metrics", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_server_is_leader "); ok {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, errors.New("no etcd_server_is_leader in the metrics")
}
