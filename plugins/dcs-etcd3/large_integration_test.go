//go:build integration

package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

// Large values with etcd's default request limit (1.5 MiB), through the
// built binary: member values just under it that add up to more than
// gRPC's default 4 MiB message read whole; a value over it is refused by
// etcd (or its client), and that member's write fails as the DCS failing,
// while reads go on.
func TestLargeValues(t *testing.T) {
	t.Parallel()
	ns := uniqueNamespace(t)
	const under = 1400 << 10
	var last dcs.Backend
	for _, name := range []string{"a", "b", "c", "d"} {
		_, b := dcstest.LaunchBinary(t, pluginPath(t))
		configure(t, b, ns, name, testTTL*10)
		if err := b.TouchMember(ctxT(t), make([]byte, under)); err != nil {
			t.Fatalf("member %s, %d bytes: %v", name, under, err)
		}
		last = b
	}
	c, err := last.GetCluster(ctxT(t))
	if err != nil {
		t.Fatalf("reading %d members of %d bytes: %v", 4, under, err)
	}
	if len(c.Members) != 4 || len(c.Omitted) != 0 {
		t.Fatalf("%d members read, omitted %+v", len(c.Members), c.Omitted)
	}

	// etcd refuses requests over 1.5 MiB; the etcd client refuses to send
	// 2 MiB and more itself.
	for size, says := range map[int]string{1800 << 10: "request is too large", 3 << 20: "larger than max"} {
		err = last.TouchMember(ctxT(t), make([]byte, size))
		if !errors.Is(err, dcs.ErrUnavailable) || !strings.Contains(err.Error(), says) {
			t.Errorf("a %d-byte member value: %v", size, err)
		}
	}
	start := time.Now()
	if c, err := last.GetCluster(ctxT(t)); err != nil || len(c.Members) != 4 {
		t.Errorf("reading after the refused write (%s): %v", time.Since(start), err)
	}
}
