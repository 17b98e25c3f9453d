package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/testkit/servers"
)

const (
	// etcdHeartbeat and etcdElection are etcd's defaults: the agents see
	// the server they would see in production.
	etcdHeartbeat = 100 * time.Millisecond
	etcdElection  = 1000 * time.Millisecond
)

// etcdServer is a single-member etcd in its own process, with a client.
type etcdServer struct {
	endpoint string // 127.0.0.1:<port>
	srv      *servers.Etcd
	client   *clientv3.Client
}

// startEtcd starts bin with its data in dir on ports picked now.
func startEtcd(bin, dir string) (*etcdServer, error) {
	srv, err := servers.StartEtcd(servers.EtcdConfig{Bin: bin, Dir: dir, Name: "bench", Heartbeat: etcdHeartbeat, Election: etcdElection})
	if err != nil {
		return nil, err
	}
	e := &etcdServer{endpoint: srv.Endpoint, srv: srv}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		e.stop()
		return nil, fmt.Errorf("connecting to etcd: %w", err)
	}
	e.client = c
	return e, nil
}

func (e *etcdServer) stop() {
	if e.client != nil {
		_ = e.client.Close()
	}
	e.srv.Stop()
}

// requestCounts reads etcd's /metrics (plain HTTP, not counted itself) and
// returns grpc_server_msg_received_total per gRPC method: every unary call
// and every message on a stream (a keep-alive on a lease stream, a watch
// creation) counts once, whether it came over gRPC or through etcd's
// JSON gateway, which forwards to the gRPC server.
func (e *etcdServer) requestCounts(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.endpoint+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseRequestCounts(resp.Body)
}

func parseRequestCounts(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	const metric = "grpc_server_msg_received_total{"
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(metric):], "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %q: %w", line, err)
		}
		method := ""
		for l := range strings.SplitSeq(labels, ",") {
			if m, ok := strings.CutPrefix(l, `grpc_method="`); ok {
				method = strings.TrimSuffix(m, `"`)
			}
		}
		out[method] += v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no grpc_server_msg_received_total in etcd's metrics")
	}
	return out, nil
}

// countDelta is after - before per method, and the total.
func countDelta(before, after map[string]float64) (map[string]float64, float64) {
	d := map[string]float64{}
	var total float64
	for m, v := range after {
		if x := v - before[m]; x != 0 {
			d[m] = x
			total += x
		}
	}
	return d, total
}

func formatCounts(d map[string]float64, per time.Duration) string {
	var names []string
	for m := range d {
		names = append(names, m)
	}
	sort.Strings(names)
	var parts []string
	for _, m := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f/s", m, d[m]/per.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// leaderKey reads the leader key: holder, lease and mod revision.
func (e *etcdServer) leaderKey(ctx context.Context, prefix string) (name string, lease clientv3.LeaseID, err error) {
	resp, err := e.client.Get(ctx, prefix+"leader")
	if err != nil {
		return "", 0, fmt.Errorf("reading %sleader: %w", prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, nil
	}
	return string(resp.Kvs[0].Value), clientv3.LeaseID(resp.Kvs[0].Lease), nil
}
