package consul

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

func TestKeyPrefix(t *testing.T) {
	for _, tc := range []struct{ ns, scope, want string }{
		{"", "pg", "service/pg/"},
		{"/service", "pg", "service/pg/"},
		{"/service/", "pg", "service/pg/"},
		{"service", "pg", "service/pg/"},
		{"//a//b/", "pg", "a/b/pg/"},
	} {
		if got := KeyPrefix(tc.ns, tc.scope); got != tc.want {
			t.Errorf("KeyPrefix(%q, %q) = %q, want %q", tc.ns, tc.scope, got, tc.want)
		}
	}
}

func TestParseCluster(t *testing.T) {
	const p = "service/pg/"
	c := parseCluster(p, api.KVPairs{
		{Key: p + "config", Value: []byte(`{"ttl":30}`), ModifyIndex: 7},
		{Key: p + "failover", Value: []byte(`{}`), ModifyIndex: 8},
		{Key: p + "failsafe", Value: []byte(`{"a":"u"}`), ModifyIndex: 9},
		{Key: p + "history", Value: []byte(`[]`), ModifyIndex: 10},
		{Key: p + "initialize", Value: nil, ModifyIndex: 11},
		{Key: p + "leader", Value: []byte("pg1"), ModifyIndex: 12, Session: "s1"},
		{Key: p + "members/pg1", Value: []byte(`{"role":"primary"}`), ModifyIndex: 13, Session: "s1"},
		{Key: p + "members/pg2", Value: []byte(`{"role":"replica"}`), ModifyIndex: 14},
		{Key: p + "members/pg2/deeper", Value: []byte(`x`), ModifyIndex: 15},
		{Key: p + "members/", Value: []byte(`x`), ModifyIndex: 16},
		{Key: p + "optime/leader", Value: []byte(`1`), ModifyIndex: 17},
		{Key: p + "status", Value: []byte(`{"optime":1}`), ModifyIndex: 18},
		{Key: p + "sync", Value: []byte(`{"leader":"pg1"}`), ModifyIndex: 19},
		{Key: "service/other/leader", Value: []byte("x"), ModifyIndex: 20},
	})
	if c.Leader == nil || *c.Leader != (dcs.Leader{Name: "pg1", Version: "12", Session: "s1"}) {
		t.Fatalf("leader %+v", c.Leader)
	}
	if len(c.Members) != 2 || c.Member("pg1").Session != "s1" || c.Member("pg2").Version != "14" || string(c.Member("pg2").Data) != `{"role":"replica"}` {
		t.Fatalf("members %+v", c.Members)
	}
	for key, want := range map[dcs.Key]string{
		dcs.KeyConfig: "7", dcs.KeyFailover: "8", dcs.KeyFailsafe: "9", dcs.KeyHistory: "10",
		dcs.KeyInitialize: "11", dcs.KeyStatus: "18", dcs.KeySync: "19",
	} {
		if v := c.Get(key); v == nil || v.Version != want {
			t.Errorf("%s: %+v, want version %s", key, v, want)
		}
	}
	if v := c.Initialize; v.Data == nil || len(v.Data) != 0 {
		t.Errorf("empty initialize reads %#v, want an empty non-nil value", v.Data)
	}
}

func TestDiff(t *testing.T) {
	const p = "service/pg/"
	seen := map[string]uint64{}
	if ev := diff(p, seen, api.KVPairs{
		{Key: p + "leader", ModifyIndex: 5}, {Key: p + "members/a", ModifyIndex: 3},
	}, 5); len(ev) != 2 {
		t.Fatalf("baseline events %+v", ev)
	}
	// No change: no events.
	if ev := diff(p, seen, api.KVPairs{{Key: p + "leader", ModifyIndex: 5}, {Key: p + "members/a", ModifyIndex: 3}}, 9); len(ev) != 0 {
		t.Fatalf("unchanged listing gave %+v", ev)
	}
	// The leader expired, a member changed, two keys appeared.
	got := diff(p, seen, api.KVPairs{
		{Key: p + "config", ModifyIndex: 12},
		{Key: p + "members/a", ModifyIndex: 11},
		{Key: p + "members/b", ModifyIndex: 10},
	}, 13)
	want := []dcs.Event{
		{Type: dcs.EventDelete, Path: "leader", Version: "13"},
		{Type: dcs.EventPut, Path: "members/b", Version: "10"},
		{Type: dcs.EventPut, Path: "members/a", Version: "11"},
		{Type: dcs.EventPut, Path: "config", Version: "12"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	if len(seen) != 3 || seen["members/a"] != 11 {
		t.Fatalf("seen %v", seen)
	}
}

func TestNextIndex(t *testing.T) {
	for _, tc := range []struct{ prev, got, want uint64 }{
		{0, 0, 1}, {0, 7, 7}, {7, 7, 7}, {7, 9, 9}, {9, 3, 0},
	} {
		if got := nextIndex(tc.prev, tc.got); got != tc.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.prev, tc.got, got, tc.want)
		}
	}
}

func TestTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl, want time.Duration
		session   string
	}{
		{time.Second, 20 * time.Second, "10s"},
		{20 * time.Second, 20 * time.Second, "10s"},
		{25 * time.Second, 25 * time.Second, "12.5s"},
		{30 * time.Second, 30 * time.Second, "15s"},
		{3 * time.Minute, 3 * time.Minute, "90s"},
	} {
		got, err := effectiveTTL(tc.ttl)
		if err != nil || got != tc.want {
			t.Errorf("effectiveTTL(%v) = %v %v, want %v", tc.ttl, got, err, tc.want)
		}
		if s := formatSeconds(SessionTTL(got)); s != tc.session {
			t.Errorf("session TTL for %v = %s, want %s", tc.ttl, s, tc.session)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, 49 * time.Hour} {
		if _, err := effectiveTTL(ttl); err == nil {
			t.Errorf("effectiveTTL(%v) accepted", ttl)
		}
	}
}

func TestCapabilities(t *testing.T) {
	c := Capabilities()
	if c[dcs.CapMinTTL] != "20" || c[CapMaxValueBytes] != "524288" || c[dcs.CapExpiryDelay] == "" {
		t.Fatalf("capabilities %v", c)
	}
}

func TestParseVersion(t *testing.T) {
	if i, err := parseVersion("42"); err != nil || i != 42 {
		t.Fatalf("parseVersion(42) = %d %v", i, err)
	}
	for _, v := range []string{"0", "-1", "x", "1.5"} {
		if _, err := parseVersion(v); !errors.Is(err, dcs.ErrVersionMismatch) {
			t.Errorf("parseVersion(%q): want ErrVersionMismatch, got %v", v, err)
		}
	}
}

func TestServiceName(t *testing.T) {
	for _, tc := range []struct{ scope, want string }{
		{"batman", "batman"},
		{"Batman_2.prod x", "batman-2-prod-x"},
		{"a+b", "au0043b"},
		{"zürich", "zu0252rich"},
	} {
		if got := ServiceName(tc.scope); got != tc.want {
			t.Errorf("ServiceName(%q) = %q, want %q", tc.scope, got, tc.want)
		}
	}
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	if got := ServiceName(string(long)); len(got) != 230 {
		t.Errorf("a 300-character scope gives a %d-character name", len(got))
	}
}

func TestRegistration(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"service_tags": ["z", "a"], "service_check_interval": "10s", "service_check_tls_server_name": "pg.example"}`))
	if err != nil {
		t.Fatal(err)
	}
	s := state{cfg: cfg, scope: "demo", member: "pg1", ttl: 30 * time.Second}
	info := serviceInfo{Role: "primary", State: "running", APIURL: "https://10.0.0.1:8008/patroni?x=1", ConnURL: "postgres://10.0.0.1:5432/postgres"}
	reg, err := registration(s, ServiceID(s.scope, s.member), "primary", info)
	if err != nil {
		t.Fatal(err)
	}
	if reg.ID != "demo/pg1" || reg.Name != "demo" || reg.Address != "10.0.0.1" || reg.Port != 5432 || !reg.EnableTagOverride ||
		!slices.Equal(reg.Tags, []string{"a", "z", "primary", "master"}) {
		t.Fatalf("registration %+v", reg)
	}
	if c := reg.Check; c.HTTP != "https://10.0.0.1:8008/primary?x=1" || c.Interval != "10s" || c.DeregisterCriticalServiceAfter != "150s" || c.TLSServerName != "pg.example" {
		t.Fatalf("check %+v", c)
	}
	reg, err = registration(s, "demo/pg1", "master", info)
	if err != nil || !slices.Equal(reg.Tags, []string{"a", "z", "master", "primary"}) {
		t.Fatalf("3.x role: %+v %v", reg, err)
	}
	if _, err := registration(s, "demo/pg1", "replica", serviceInfo{APIURL: "not a url", ConnURL: "postgres://h:1/x"}); err == nil {
		t.Fatal("a bad api_url registered")
	}
}

func TestOperationsBeforeConfigure(t *testing.T) {
	b := New(nil)
	if _, err := b.GetCluster(context.Background()); !errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("GetCluster before Configure: %v", err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Watch(context.Background(), func(dcs.Event) {}); !errors.Is(err, dcs.ErrUnavailable) {
		t.Fatalf("Watch after Close: %v", err)
	}
}
