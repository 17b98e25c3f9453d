package etcd3

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// minReconnect is the shortest time between two reconnections to one
// member.
const minReconnect = 5 * time.Second

// reconnector replaces the connection to an etcd member a request hung on:
// a request whose attempt ran out of time names the member it was sent to,
// and the member's connection is dropped and made anew, so that the
// balancer stops handing it out at once instead of after the keepalive's
// 15 s. A frozen member accepts a new TCP connection (the kernel does) but
// never completes the gRPC handshake, so the new connection is not used
// until the member answers again; a healthy member that was merely slow is
// connected again within milliseconds. Requests still running on the old
// connection go on until they end.
type reconnector struct {
	logger hclog.Logger
	client atomic.Pointer[clientv3.Client]

	mu   sync.Mutex
	last map[string]time.Time // by peer address
}

func newReconnector(logger hclog.Logger) *reconnector {
	return &reconnector{logger: logger, last: map[string]time.Time{}}
}

// dialOptions install the interceptors that see requests run out of time.
// They run inside the client's own (retrying) interceptors: they see each
// gRPC call.
func (r *reconnector) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(r.unary),
		grpc.WithChainStreamInterceptor(r.stream),
	}
}

func (r *reconnector) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var p peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.hung(p.Addr, method)
	}
	return err
}

func (r *reconnector) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &watchedStream{ClientStream: cs, r: r, ctx: ctx, method: method}, nil
}

// watchedStream reports the member of a stream whose receive ran out of
// time (a lease keep-alive sent to a frozen member).
type watchedStream struct {
	grpc.ClientStream
	r      *reconnector
	ctx    context.Context
	method string
}

func (s *watchedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && errors.Is(s.ctx.Err(), context.DeadlineExceeded) {
		s.r.hungStream(s.ClientStream, s.method)
	}
	return err
}

// hungStream reports the member a stream runs on.
func (r *reconnector) hungStream(cs grpc.ClientStream, method string) {
	if p, ok := peer.FromContext(cs.Context()); ok {
		r.hung(p.Addr, method)
	}
}

// hung drops and remakes the connection to the member at addr, unless that
// was done less than minReconnect ago or addr is not one of the client's
// endpoints (or the only one).
func (r *reconnector) hung(addr net.Addr, method string) {
	client := r.client.Load()
	if addr == nil || client == nil {
		return
	}
	a := addr.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.last[a]) < minReconnect {
		return
	}
	all := client.Endpoints()
	var others []string
	for _, ep := range all {
		if !endpointAt(ep, a) {
			others = append(others, ep)
		}
	}
	if len(others) == 0 || len(others) == len(all) {
		return
	}
	r.last[a] = time.Now()
	r.logger.Warn("a request to an etcd member ran out of time; connecting to it anew", "member", a, "method", method)
	client.SetEndpoints(others...)
	client.SetEndpoints(all...)
}

// endpointAt reports whether the endpoint (a URL or host:port) is the peer
// address addr (ip:port).
func endpointAt(endpoint, addr string) bool {
	hostPort := endpoint
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return false
		}
		hostPort = u.Host
	}
	if hostPort == addr {
		return true
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	ahost, aport, err := net.SplitHostPort(addr)
	if err != nil || port != aport || net.ParseIP(host) != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if net.ParseIP(ip).Equal(net.ParseIP(ahost)) {
			return true
		}
	}
	return false
}
