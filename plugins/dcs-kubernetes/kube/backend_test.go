package kube

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestPlacement(t *testing.T) {
	pod := environment{inPod: true, namespace: "db"}
	for _, tc := range []struct {
		name      string
		cfg       Config
		env       environment
		ns, store string
	}{
		{"outside a Pod", Config{}, environment{}, "default", MemberStoreConfigMap},
		{"in a Pod", Config{}, pod, "db", MemberStorePod},
		{"in a Pod, configured", Config{Namespace: "other", MemberStore: MemberStoreConfigMap}, pod, "other", MemberStoreConfigMap},
		{"outside, Pod store configured", Config{MemberStore: MemberStorePod}, environment{}, "default", MemberStorePod},
		{"in a Pod without namespace file", Config{}, environment{inPod: true}, "default", MemberStorePod},
	} {
		ns, store := placement(&tc.cfg, tc.env)
		if ns != tc.ns || store != tc.store {
			t.Errorf("%s: namespace %q store %q, want %q %q", tc.name, ns, store, tc.ns, tc.store)
		}
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"https://10.96.0.1":      "10.96.0.1:443",
		"https://10.96.0.1:6443": "10.96.0.1:6443",
		"http://localhost":       "localhost:80",
		"https://[fd00::1]":      "[fd00::1]:443",
	} {
		if got, err := hostPort(in); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := hostPort("10.96.0.1"); err == nil {
		t.Error("a bare address accepted as a URL")
	}
}

// TestBypassDialer checks that connections to the service address go to
// the API servers' own addresses, skipping dead ones and sticking to the
// one that worked, with the service as the last resort.
func TestBypassDialer(t *testing.T) {
	var dialed []string
	up := map[string]bool{"10.0.0.2:6443": true, "10.96.0.1:443": true}
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		if up[addr] {
			c1, c2 := net.Pipe()
			c2.Close()
			return c1, nil
		}
		return nil, errors.New("connection refused")
	}
	d := bypassDialer("10.96.0.1:443", []string{"10.0.0.1:6443", "10.0.0.2:6443"}, dial)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for range 2 {
		conn, err := d(ctx, "tcp", "10.96.0.1:443")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	if want := []string{"10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.2:6443"}; !equal(dialed, want) {
		t.Fatalf("dialed %v, want %v", dialed, want)
	}
	dialed = nil
	up["10.0.0.2:6443"] = false
	if _, err := d(ctx, "tcp", "10.96.0.1:443"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.2:6443", "10.0.0.1:6443", "10.96.0.1:443"}; !equal(dialed, want) {
		t.Fatalf("dialed %v, want %v (the service address last)", dialed, want)
	}
	dialed = nil
	if _, err := d(ctx, "tcp", "example.com:443"); err == nil || !equal(dialed, []string{"example.com:443"}) {
		t.Fatalf("another address was not dialed as is: %v", dialed)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
