package etcd3

import "testing"

func TestEndpointAt(t *testing.T) {
	for _, tc := range []struct {
		endpoint, addr string
		want           bool
	}{
		{"http://127.0.0.1:2379", "127.0.0.1:2379", true},
		{"https://127.0.0.1:2379", "127.0.0.1:2379", true},
		{"127.0.0.1:2379", "127.0.0.1:2379", true},
		{"http://127.0.0.1:2379", "127.0.0.1:2380", false},
		{"http://127.0.0.2:2379", "127.0.0.1:2379", false},
		{"http://[::1]:2379", "[::1]:2379", true},
		{"http://localhost:2379", "127.0.0.1:2379", true},
		{"http://localhost:2379", "127.0.0.1:2380", false},
		{"http://%zz", "127.0.0.1:2379", false},
	} {
		if got := endpointAt(tc.endpoint, tc.addr); got != tc.want {
			t.Errorf("endpointAt(%q, %q) = %v, want %v", tc.endpoint, tc.addr, got, tc.want)
		}
	}
}
