package kube

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// apiServerAddresses reads the API server addresses from the Endpoints
// default/kubernetes, which the API servers keep up to date, as Patroni's
// bypass_api_service does.
func apiServerAddresses(ctx context.Context, client kubernetes.Interface, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ep, err := client.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the API server addresses from Endpoints default/kubernetes: %w", err)
	}
	var addrs []string
	for _, s := range ep.Subsets {
		port := 0
		for _, p := range s.Ports {
			if p.Name == "https" || port == 0 {
				port = int(p.Port)
			}
		}
		if port == 0 {
			continue
		}
		for _, a := range s.Addresses {
			addrs = append(addrs, net.JoinHostPort(a.IP, strconv.Itoa(port)))
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("Endpoints default/kubernetes lists no address")
	}
	return addrs, nil
}

// hostPort returns the host:port of an API server URL.
func hostPort(host string) (string, error) {
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("API server address %q is not a URL", host)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	if u.Scheme == "http" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return net.JoinHostPort(u.Hostname(), "443"), nil
}

type dialFunc = func(ctx context.Context, network, address string) (net.Conn, error)

// bypassDialer dials the API server's own addresses instead of service:
// the last one that worked first, then the others in turn, and the service
// address itself when none answers. TLS still verifies the service name,
// which the API server certificates carry.
func bypassDialer(service string, addrs []string, dial dialFunc) dialFunc {
	var (
		mu   sync.Mutex
		next int
	)
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if address != service {
			return dial(ctx, network, address)
		}
		mu.Lock()
		start := next
		mu.Unlock()
		for i := range addrs {
			n := (start + i) % len(addrs)
			conn, err := dial(ctx, network, addrs[n])
			if err == nil {
				mu.Lock()
				next = n
				mu.Unlock()
				return conn, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
		}
		return dial(ctx, network, address)
	}
}
