package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

func TestMemberRoundTrip(t *testing.T) {
	in := `{"conn_url":"postgres://10.0.0.1:5433/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"replica","version":"4.1.4","tags":{"nofailover":true,"zone":"a","failover_priority":0},"xlog_location":25166136,"timeline":2,"receive_lsn":25166136,"replay_lsn":25166000,"replication_state":"streaming"}`
	m, err := ParseMember("pg2", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.State != "running" || m.Role != RoleReplica || m.LSN() != 25166136 || m.Timeline != 2 {
		t.Fatalf("parsed %+v", m)
	}
	if !m.Tags.NoFailover || m.Tags.Custom["zone"] != "a" || m.Tags.Priority() != 0 || m.Tags.CanFailover() {
		t.Fatalf("tags %+v", m.Tags)
	}
	host, port := m.HostPort()
	if host != "10.0.0.1" || port != 5433 {
		t.Fatalf("host %s port %d", host, port)
	}
	again, err := ParseMember("pg2", m.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Marshal()) != string(m.Marshal()) {
		t.Fatalf("round trip changed the value:\n%s\n%s", m.Marshal(), again.Marshal())
	}
}

func TestMemberFalseTagsLeftOut(t *testing.T) {
	m := Member{State: "running", Tags: Tags{NoFailover: false, Custom: map[string]any{"dc": "x"}}}
	if got := string(m.Marshal()); got != `{"state":"running","tags":{"dc":"x"}}` {
		t.Fatalf("got %s", got)
	}
	if got := string(Member{State: "running"}.Marshal()); got != `{"state":"running"}` {
		t.Fatalf("empty tags published: %s", got)
	}
}

func TestMemberLegacyAndKwargs(t *testing.T) {
	m, err := ParseMember("a", []byte("postgres://h:5432/postgres?api_url=http://h:8008/patroni"))
	if err != nil || m.APIURL != "http://h:8008/patroni" || m.ConnURL != "postgres://h:5432/postgres" {
		t.Fatalf("legacy: %+v %v", m, err)
	}
	m, err = ParseMember("b", []byte(`{"conn_kwargs":{"host":"h2","port":6432,"dbname":"postgres"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if h, p := m.HostPort(); h != "h2" || p != 6432 {
		t.Fatalf("kwargs: %s %d", h, p)
	}
}

func TestFailover(t *testing.T) {
	f, err := ParseFailover([]byte(`{"leader":"pg1","member":"pg2","scheduled_at":"2030-01-01T00:00:00+00:00"}`))
	if err != nil || f.Leader != "pg1" || f.Candidate != "pg2" || f.ScheduledAt == nil || !f.ScheduledAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v %v", f, err)
	}
	if got := string(f.Marshal()); got != `{"leader":"pg1","member":"pg2","scheduled_at":"2030-01-01T00:00:00+00:00"}` {
		t.Fatalf("marshal: %s", got)
	}
	f, err = ParseFailover([]byte("pg1:pg3"))
	if err != nil || f.Leader != "pg1" || f.Candidate != "pg3" {
		t.Fatalf("legacy: %+v %v", f, err)
	}
	f, err = ParseFailover([]byte("{}"))
	if err != nil || !f.IsEmpty() {
		t.Fatalf("empty: %+v %v", f, err)
	}
	if _, err := ParseFailover([]byte(`{"scheduled_at":"2030-01-01T00:00:00"}`)); err == nil {
		t.Fatal("a schedule without a time zone was accepted")
	}
}

func TestSyncState(t *testing.T) {
	s, err := ParseSyncState([]byte(`{"leader":"pg1","quorum":1,"sync_standby":"pg3,pg2"}`))
	if err != nil || s.Leader != "pg1" || s.Quorum != 1 || len(s.SyncStandby) != 2 || !s.Matches("PG2") {
		t.Fatalf("%+v %v", s, err)
	}
	if got := string(s.Marshal()); got != `{"leader":"pg1","quorum":1,"sync_standby":"pg2,pg3"}` {
		t.Fatalf("marshal: %s", got)
	}
	s, err = ParseSyncState([]byte(`{"leader":"pg1","sync_standby":null}`))
	if err != nil || len(s.SyncStandby) != 0 {
		t.Fatalf("null: %+v %v", s, err)
	}
	if got := string((SyncState{Leader: "pg1"}).Marshal()); got != `{"leader":"pg1","quorum":0,"sync_standby":null}` {
		t.Fatalf("marshal empty: %s", got)
	}
	s, err = ParseSyncState([]byte(`{}`))
	if err != nil || s.Leader != "" {
		t.Fatalf("{}: %+v %v", s, err)
	}
}

func TestHistoryAndStatus(t *testing.T) {
	in := `[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","pg2"],[2,33554592,"no recovery target specified"]]`
	h, err := ParseHistory([]byte(in))
	if err != nil || len(h) != 2 || h[0].NewLeader != "pg2" || h[1].LSN != 33554592 {
		t.Fatalf("%+v %v", h, err)
	}
	if got := string(h.Marshal()); got != in {
		t.Fatalf("marshal:\n%s\n%s", got, in)
	}
	s, err := ParseStatus([]byte(`{"optime":25166136,"slots":{"pg2":25166136},"retain_slots":["pg2"]}`))
	if err != nil || s.Optime != 25166136 || s.Slots["pg2"] != 25166136 {
		t.Fatalf("%+v %v", s, err)
	}
	s, err = ParseStatus([]byte(`123`))
	if err != nil || s.Optime != 123 {
		t.Fatalf("legacy status %+v %v", s, err)
	}
	if got := string(Status{Optime: 5}.Marshal()); got != `{"optime":5}` {
		t.Fatalf("status marshal %s", got)
	}
}

func TestFromDCS(t *testing.T) {
	raw := &dcs.Cluster{
		Initialize: &dcs.Value{Data: []byte("7268616322854375442"), Version: "3"},
		Leader:     &dcs.Leader{Name: "pg1", Version: "10"},
		Members: []dcs.Member{
			{Name: "pg2", Data: []byte(`{"state":"running","role":"replica","xlog_location":100}`)},
			{Name: "pg1", Data: []byte(`{"state":"running","role":"primary","xlog_location":200}`)},
			{Name: "bad", Data: []byte(`{not json`)},
		},
		History: &dcs.Value{Data: []byte(`[]`)},
		Status:  &dcs.Value{Data: []byte(`{"optime":300}`)},
		Sync:    &dcs.Value{Data: []byte(`garbage`), Version: "7"},
	}
	c, problems := FromDCS(raw)
	if len(problems) != 2 {
		t.Fatalf("want 2 problems (member bad, sync), got %v", problems)
	}
	for _, p := range problems {
		if !strings.Contains(p.Error(), "bad") && !strings.Contains(p.Error(), "/sync") {
			t.Errorf("problem does not name the key: %v", p)
		}
	}
	if c.SysID() != "7268616322854375442" || c.LeaderName() != "pg1" || c.Leader.Member.Role != RolePrimary {
		t.Fatalf("cluster %+v", c)
	}
	if c.Timeline() != 1 {
		t.Fatalf("timeline %d", c.Timeline())
	}
	if c.Members[0].Name != "bad" || c.Members[1].Name != "pg1" {
		t.Fatalf("members not sorted: %v", c.Members)
	}
	if lag, ok := c.LagOf(*c.Member("pg2")); !ok || lag != 200 {
		t.Fatalf("lag %d %v", lag, ok)
	}
	if c.Sync == nil || c.Sync.Version != "7" {
		t.Fatalf("a malformed /sync must still carry its version for CAS: %+v", c.Sync)
	}
}

func FuzzParseMember(f *testing.F) {
	f.Add([]byte(`{"conn_url":"postgres://h:1/p","tags":{"nofailover":"yes"}}`))
	f.Add([]byte(`postgres://h:5432/postgres?api_url=x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMember("x", data)
		if err == nil {
			_ = m.Marshal()
			m.HostPort()
		}
	})
}

func FuzzParseKeys(f *testing.F) {
	f.Add([]byte(`[[1,2,"r"]]`))
	f.Add([]byte(`{"leader":"a","sync_standby":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseHistory(data)
		_, _ = ParseSyncState(data)
		_, _ = ParseFailover(data)
		_, _ = ParseStatus(data)
		_, _ = ParseFailsafe(data)
	})
}

// TestFromDCSMalformed: every key's malformed values are flagged and read
// the way FromDCS documents; well-formed neighbours are not.
func TestFromDCSMalformed(t *testing.T) {
	val := func(s string) *dcs.Value { return &dcs.Value{Data: []byte(s), Version: "4"} }
	tests := []struct {
		key  string
		raw  dcs.Cluster
		bad  bool
		read func(c *Cluster) bool
	}{
		{KeyInitialize, dcs.Cluster{Initialize: val("garbage")}, true, func(c *Cluster) bool { return c.Initialize != nil && c.SysID() == "" }},
		{KeyInitialize, dcs.Cluster{Initialize: val("-1")}, true, func(c *Cluster) bool { return c.SysID() == "" }},
		{KeyInitialize, dcs.Cluster{Initialize: val("18446744073709551616")}, true, func(c *Cluster) bool { return c.SysID() == "" }},
		{KeyInitialize, dcs.Cluster{Initialize: val(" 7268616322854375442\n")}, false, func(c *Cluster) bool { return c.SysID() == "7268616322854375442" }},
		{KeyInitialize, dcs.Cluster{Initialize: val("")}, false, func(c *Cluster) bool { return c.Initialize != nil && *c.Initialize == "" }},
		{KeyLeader, dcs.Cluster{Leader: &dcs.Leader{Name: ""}}, true, func(c *Cluster) bool { return c.IsLocked() && c.LeaderName() == "" }},
		{KeyLeader, dcs.Cluster{Leader: &dcs.Leader{Name: "pg1\n"}}, true, func(c *Cluster) bool { return c.IsLocked() && c.LeaderName() == "" }},
		{KeyLeader, dcs.Cluster{Leader: &dcs.Leader{Name: "pg\x001"}}, true, func(c *Cluster) bool { return c.LeaderName() == "" }},
		{KeyLeader, dcs.Cluster{Leader: &dcs.Leader{Name: "pg-1.example"}}, false, func(c *Cluster) bool { return c.LeaderName() == "pg-1.example" }},
		{MemberKey("pg2"), dcs.Cluster{Members: []dcs.Member{{Name: "pg2", Data: []byte("null")}}}, true, func(c *Cluster) bool { return c.Member("pg2") != nil && !c.Member("pg2").IsRunning() }},
		{MemberKey("pg2"), dcs.Cluster{Members: []dcs.Member{{Name: "pg2", Data: []byte(`{"state":"running","xlog_location":"0/1"}`)}}}, true, func(c *Cluster) bool { return !c.Member("pg2").IsRunning() }},
		{KeyFailover, dcs.Cluster{Failover: val("garbage")}, true, func(c *Cluster) bool { return c.Failover == nil }},
		{KeyFailover, dcs.Cluster{Failover: val(`{"member": 2}`)}, true, func(c *Cluster) bool { return c.Failover == nil }},
		{KeyFailover, dcs.Cluster{Failover: val("pg1:pg2")}, false, func(c *Cluster) bool { return c.Failover.Candidate == "pg2" }},
		{KeySync, dcs.Cluster{Sync: val(`{"leader":"pg1","sync_standby":"pg2"`)}, true, func(c *Cluster) bool { return c.Sync != nil && c.Sync.Leader == "" && c.Sync.Version == "4" }},
		{KeySync, dcs.Cluster{Sync: val(`{"sync_standby":"pg2"}`)}, true, func(c *Cluster) bool { return c.Sync.Leader == "" }},
		{KeySync, dcs.Cluster{Sync: val(`{"leader":"pg1","quorum":-1}`)}, true, func(c *Cluster) bool { return c.Sync.Leader == "" }},
		{KeySync, dcs.Cluster{Sync: val(`null`)}, true, func(c *Cluster) bool { return c.Sync.Leader == "" }},
		{KeySync, dcs.Cluster{Sync: val(`{}`)}, false, func(c *Cluster) bool { return c.Sync.Leader == "" }},
		{KeyHistory, dcs.Cluster{History: val(`null`)}, true, func(c *Cluster) bool { return !c.HasHistory && c.Timeline() == 0 }},
		{KeyHistory, dcs.Cluster{History: val(`[[0, 100, "x"]]`)}, true, func(c *Cluster) bool { return !c.HasHistory }},
		{KeyHistory, dcs.Cluster{History: val(`[]`)}, false, func(c *Cluster) bool { return c.Timeline() == 1 }},
		{KeyStatus, dcs.Cluster{Status: val(`{"optime":"0/3000060"}`)}, true, func(c *Cluster) bool { return c.Status.Optime == 0 }},
		{KeyStatus, dcs.Cluster{Status: val(`-5`)}, true, func(c *Cluster) bool { return c.Status.Optime == 0 }},
		{KeyStatus, dcs.Cluster{Status: val(`null`)}, true, func(c *Cluster) bool { return c.Status.Optime == 0 }},
		{KeyFailsafe, dcs.Cluster{Failsafe: val(`["pg1"]`)}, true, func(c *Cluster) bool { return c.Failsafe == nil }},
		{KeyFailsafe, dcs.Cluster{Failsafe: val(`null`)}, true, func(c *Cluster) bool { return c.Failsafe == nil }},
		{KeyFailsafe, dcs.Cluster{Failsafe: val(`{"pg1":"http://pg1:8008/patroni"}`)}, false, func(c *Cluster) bool { return len(c.Failsafe) == 1 }},
	}
	for _, tc := range tests {
		c, problems := FromDCS(&tc.raw)
		if c.IsMalformed(tc.key) != tc.bad || (len(problems) == 1) != tc.bad {
			t.Errorf("%s %+v: malformed %v, problems %v; want malformed %v", tc.key, tc.raw, c.IsMalformed(tc.key), problems, tc.bad)
		}
		if tc.bad && !strings.Contains(problems[0].Error(), "/"+tc.key) {
			t.Errorf("problem does not name /%s: %v", tc.key, problems[0])
		}
		if !tc.read(c) {
			t.Errorf("%s %+v: not read the documented way: %+v", tc.key, tc.raw, c)
		}
	}
}

// A value the plugin left out of the read for its size reads as present
// and malformed, never as absent.
func TestFromDCSOmittedValuesFailClosed(t *testing.T) {
	raw := &dcs.Cluster{Omitted: []dcs.OmittedValue{
		{Path: dcs.LeaderPath, Size: 5 << 20}, {Path: string(dcs.KeySync), Size: 5 << 20},
		{Path: dcs.MembersPath + "pg2", Size: 5 << 20}, {Path: string(dcs.KeyConfig), Size: 5 << 20},
	}}
	c, problems := FromDCS(raw)
	if !c.IsLocked() || c.LeaderName() != "" || !c.IsMalformed(KeyLeader) {
		t.Errorf("omitted leader key read as %+v (malformed %v): want held by an unknown member", c.Leader, c.Malformed)
	}
	if c.Sync == nil || !c.IsMalformed(KeySync) {
		t.Errorf("omitted /sync read as %+v: want present and malformed", c.Sync)
	}
	if c.Member("pg2") == nil || !c.IsMalformed(MemberKey("pg2")) {
		t.Errorf("omitted members/pg2 not read as a member with no data: %+v", c.Members)
	}
	if c.Config == nil {
		t.Error("omitted /config read as absent: the bootstrap configuration would replace the one in effect")
	}
	if len(problems) != 4 {
		t.Fatalf("%d problems, want 4: %v", len(problems), problems)
	}
	for _, p := range problems {
		if !strings.Contains(p.Error(), "too large to be read") {
			t.Errorf("problem %q does not say the value was too large", p)
		}
	}
}
