package kube

import (
	"reflect"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// clock is a fake clock for the liveness rules.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }
func leaderObj(rv string, ann map[string]string) object {
	return object{name: "pg-leader", rv: rv, annotations: ann}
}

func TestObserveCountsFromFirstSight(t *testing.T) {
	clk := newClock()
	o := newObservations()
	t0 := o.observe("leader", "10", "a", clk.now())
	clk.advance(time.Second)
	if got := o.observe("leader", "10", "a", clk.now()); !got.Equal(t0) {
		t.Fatal("an unchanged record restarted its clock")
	}
	if got := o.observe("leader", "12", "a", clk.now()); !got.Equal(t0) {
		t.Fatal("a new resourceVersion with the same record (a status write) restarted its clock")
	}
	clk.advance(time.Second)
	t2 := o.observe("leader", "13", "b", clk.now())
	if !t2.Equal(clk.now()) {
		t.Fatal("a changed record did not restart its clock")
	}
	// A stale read of the old record changes nothing.
	clk.advance(time.Second)
	if got := o.observe("leader", "11", "a", clk.now()); !got.Equal(t2) {
		t.Fatal("an older resourceVersion replaced a newer observation")
	}
	o.forget("leader")
	if got := o.observe("leader", "11", "a", clk.now()); !got.Equal(clk.now()) {
		t.Fatal("a forgotten record kept its time")
	}
}

func TestRecordTTL(t *testing.T) {
	for v, want := range map[string]time.Duration{"30": 30 * time.Second, "1.5": 1500 * time.Millisecond, "": 7 * time.Second, "x": 7 * time.Second, "0": 7 * time.Second} {
		if got := recordTTL(map[string]string{annTTL: v}, 7*time.Second); got != want {
			t.Errorf("ttl %q: %v, want %v", v, got, want)
		}
	}
}

// TestLeaderExpiresOnReaderClock checks Patroni's rule: the leader is
// present while its record changed within ttl (from the record's own ttl
// annotation) of the reader's time, whatever renewTime says.
func TestLeaderExpiresOnReaderClock(t *testing.T) {
	clk := newClock()
	v := &viewer{layout: layout{scope: "pg"}, obs: newObservations()}
	ann := map[string]string{"leader": "a", "acquireTime": "x", "renewTime": "1999-01-01T00:00:00+00:00", "ttl": "3", "transitions": "0"}
	snap := func(rv string, ann map[string]string) snapshot {
		return snapshot{objects: map[string]object{"pg-leader": leaderObj(rv, ann)}, members: map[string]object{}}
	}
	c, next := v.view(snap("5", ann), 30*time.Second, clk.now())
	if c.Leader == nil || c.Leader.Name != "a" || c.Leader.Version != "5" {
		t.Fatalf("a renewTime in the past must not matter: leader %+v", c.Leader)
	}
	if want := clk.now().Add(3 * time.Second); !next.Equal(want) {
		t.Fatalf("next expiry %v, want %v (the record's ttl, not the reader's)", next, want)
	}
	clk.advance(2999 * time.Millisecond)
	if c, _ := v.view(snap("5", ann), 30*time.Second, clk.now()); c.Leader == nil {
		t.Fatal("leader gone before its ttl")
	}
	clk.advance(time.Millisecond)
	if c, next := v.view(snap("5", ann), 30*time.Second, clk.now()); c.Leader != nil || !next.IsZero() {
		t.Fatalf("leader %+v still present at its ttl (next %v)", c.Leader, next)
	}
	// A renewal brings it back, from when it is seen.
	renewed := map[string]string{"leader": "a", "acquireTime": "x", "renewTime": "later", "ttl": "3", "transitions": "0"}
	if c, _ := v.view(snap("6", renewed), 30*time.Second, clk.now()); c.Leader == nil {
		t.Fatal("renewed leader absent")
	}
	// A released lock (no leader annotation) is absent at once.
	delete(renewed, "leader")
	if c, _ := v.view(snap("7", renewed), 30*time.Second, clk.now()); c.Leader != nil {
		t.Fatal("released leader present")
	}
}

func TestMembersExpire(t *testing.T) {
	clk := newClock()
	ttl := 3 * time.Second
	v := &viewer{layout: layout{scope: "pg"}, obs: newObservations()}
	custos := object{name: "a", rv: "1", annotations: map[string]string{"status": `{"state":"running"}`, "renewTime": "t1"}}
	patroni := object{name: "b", rv: "2", annotations: map[string]string{"status": `{"state":"running"}`}}
	fresh := object{name: "c", rv: "3", annotations: map[string]string{}}
	s := snapshot{objects: map[string]object{}, members: map[string]object{"a": custos, "b": patroni, "c": fresh}}
	c, _ := v.view(s, ttl, clk.now())
	if names := memberNames(c); !reflect.DeepEqual(names, []string{"a", "b"}) {
		t.Fatalf("members %v, want a and b (a Pod without status is no member yet)", names)
	}
	clk.advance(ttl)
	c, next := v.view(s, ttl, clk.now())
	if names := memberNames(c); !reflect.DeepEqual(names, []string{"b"}) {
		t.Fatalf("members %v after ttl: a (custos, not renewed) expires, b (Patroni's Pod) stays", names)
	}
	if !next.IsZero() {
		t.Fatalf("next expiry %v with no live custos record", next)
	}
	// A touch (new renewTime) brings a back.
	custos.annotations = map[string]string{"status": `{"state":"running"}`, "renewTime": "t2"}
	custos.rv = "4"
	s.members["a"] = custos
	if c, _ := v.view(s, ttl, clk.now()); !reflect.DeepEqual(memberNames(c), []string{"a", "b"}) {
		t.Fatal("touched member still absent")
	}
	// A member whose object is gone is forgotten.
	delete(s.members, "a")
	v.view(s, ttl, clk.now())
	if _, ok := v.obs.seen[memberIDPrefix+"a"]; ok {
		t.Fatal("observation of a deleted member kept")
	}
}

func memberNames(c *dcs.Cluster) []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Name)
	}
	return out
}

func TestViewKeysAndVersions(t *testing.T) {
	v := &viewer{layout: layout{scope: "pg"}, obs: newObservations()}
	s := snapshot{objects: map[string]object{
		"pg-config":   {name: "pg-config", rv: "10", annotations: map[string]string{"config": `{"ttl":30}`, "initialize": "123", "history": "[]"}},
		"pg-leader":   {name: "pg-leader", rv: "11", annotations: map[string]string{"optime": "5", "failsafe": `{"a":"u"}`}},
		"pg-failover": {name: "pg-failover", rv: "12"},
		"pg-sync":     {name: "pg-sync", rv: "13", annotations: map[string]string{"leader": "a", "sync_standby": "b"}},
	}}
	c, _ := v.view(s, time.Second, time.Now())
	want := map[dcs.Key]*dcs.Value{
		dcs.KeyConfig:     {Data: []byte(`{"ttl":30}`), Version: contentVersion([]byte(`{"ttl":30}`))},
		dcs.KeyInitialize: {Data: []byte("123"), Version: contentVersion([]byte("123"))},
		dcs.KeyHistory:    {Data: []byte("[]"), Version: contentVersion([]byte("[]"))},
		dcs.KeyStatus:     {Data: []byte(`{"optime":5}`), Version: contentVersion([]byte(`{"optime":5}`))},
		dcs.KeyFailsafe:   {Data: []byte(`{"a":"u"}`), Version: contentVersion([]byte(`{"a":"u"}`))},
		dcs.KeyFailover:   {Data: []byte(`{}`), Version: "12"},
		dcs.KeySync:       {Data: []byte(`{"leader":"a","sync_standby":"b"}`), Version: "13"},
	}
	for _, k := range dcs.Keys {
		if got := c.Get(k); !reflect.DeepEqual(got, want[k]) {
			t.Errorf("%s: %+v, want %+v", k, got, want[k])
		}
	}
	if c.Leader != nil {
		t.Errorf("leader %+v without a leader record", c.Leader)
	}
}

func TestDiff(t *testing.T) {
	prev := &dcs.Cluster{
		Leader:  &dcs.Leader{Name: "a", Version: "5"},
		Config:  &dcs.Value{Data: []byte("x"), Version: "c1"},
		Members: []dcs.Member{{Name: "a", Data: []byte("1"), Version: "1"}, {Name: "b", Data: []byte("1"), Version: "2"}},
	}
	same := &dcs.Cluster{
		Leader:  &dcs.Leader{Name: "a", Version: "9"}, // renewed: no event
		Config:  &dcs.Value{Data: []byte("x"), Version: "c1"},
		Members: []dcs.Member{{Name: "a", Data: []byte("1"), Version: "7"}, {Name: "b", Data: []byte("1"), Version: "2"}},
	}
	if ev := diff(prev, same); len(ev) != 0 {
		t.Fatalf("renewals made events %v", ev)
	}
	next := &dcs.Cluster{
		Config:  &dcs.Value{Data: []byte("y"), Version: "c2"},
		Sync:    &dcs.Value{Data: []byte("{}"), Version: "3"},
		Members: []dcs.Member{{Name: "a", Data: []byte("2"), Version: "8"}, {Name: "c", Data: []byte("1"), Version: "9"}},
	}
	got := diff(prev, next)
	want := []dcs.Event{
		{Type: dcs.EventDelete, Path: "leader", Version: "5"},
		{Type: dcs.EventPut, Path: "config", Version: "c2"},
		{Type: dcs.EventPut, Path: "sync", Version: "3"},
		{Type: dcs.EventPut, Path: "members/a", Version: "8"},
		{Type: dcs.EventPut, Path: "members/c", Version: "9"},
		{Type: dcs.EventDelete, Path: "members/b", Version: "2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n%v\nwant\n%v", got, want)
	}
	if got := diff(next, &dcs.Cluster{Leader: &dcs.Leader{Name: "b", Version: "10"}, Members: next.Members, Config: next.Config, Sync: next.Sync}); !reflect.DeepEqual(got, []dcs.Event{{Type: dcs.EventPut, Path: "leader", Version: "10"}}) {
		t.Fatalf("new leader events %v", got)
	}
}

func TestMemberLabels(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"tmp_role_label": "tmp", "bootstrap_labels": {"boot": "yes"}, "standby_leader_label_value": "standby"}`))
	if err != nil {
		t.Fatal(err)
	}
	s := func(v string) *string { return &v }
	for _, tc := range []struct {
		data string
		want map[string]*string
	}{
		{`{"role":"primary","state":"running"}`, map[string]*string{"role": s("primary"), "tmp": s("master"), "boot": nil}},
		{`{"role":"master","state":"starting"}`, map[string]*string{"role": s("primary"), "tmp": s("master"), "boot": nil}},
		{`{"role":"standby_leader","state":"running"}`, map[string]*string{"role": s("standby"), "tmp": s("master"), "boot": nil}},
		{`{"role":"replica","state":"running"}`, map[string]*string{"role": s("replica"), "tmp": s("replica"), "boot": nil}},
		{`{"role":"replica","state":"stopped"}`, map[string]*string{"role": nil, "tmp": nil, "boot": nil}},
		{`{"role":"demoted","state":"running"}`, map[string]*string{"role": s("demoted"), "tmp": s("demoted"), "boot": nil}},
		{`{"role":"uninitialized","state":"creating replica"}`, map[string]*string{"role": nil, "tmp": nil, "boot": s("yes")}},
		{`{"state":"initializing new cluster"}`, map[string]*string{"role": nil, "tmp": nil, "boot": s("yes")}},
		{`not json`, map[string]*string{"role": nil, "tmp": nil, "boot": nil}},
	} {
		if got := memberLabels(cfg, []byte(tc.data)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %s, want %s", tc.data, render(got), render(tc.want))
		}
	}
}

func render(m map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v == nil {
			out[k] = "<removed>"
		} else {
			out[k] = *v
		}
	}
	return out
}

func TestFormatTime(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600))
	if got := formatTime(at); got != "2030-01-02T02:04:05.000006+00:00" {
		t.Fatalf("formatTime %q", got)
	}
	if ttlSeconds(2500*time.Millisecond) != "3" || ttlSeconds(30*time.Second) != "30" {
		t.Fatal("ttl annotation is whole seconds, rounded up")
	}
}
