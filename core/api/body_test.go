package api

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

func TestParseSeconds(t *testing.T) {
	cases := []struct {
		in   any
		want int64
		ok   bool
	}{
		{json.Number("30"), 30, true},
		{json.Number("2.5"), 2, true}, // half to even, as Patroni's rint
		{json.Number("3.5"), 4, true},
		{"30", 30, true},
		{"30s", 30, true},
		{" 30 s ", 30, true},
		{"1min", 60, true},
		{"1.5min", 90, true},
		{"2h", 7200, true},
		{"1d", 86400, true},
		{"1500ms", 2, true},
		{"1e2", 100, true},
		{"-5", -5, true},
		{"", 0, false},
		{"s", 0, false},
		{"5 parsecs", 0, false},
		{"5m", 0, false}, // PostgreSQL's minute unit is min
		{true, 0, false},
		{nil, 0, false},
	}
	for _, c := range cases {
		got, ok := parseSeconds(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("parseSeconds(%#v) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestPostgresVersionNum(t *testing.T) {
	for in, want := range map[string]int{"15.2": 150002, "10.1": 100001, "9.5.3": 90503, "9.3.13": 90313, "16.10": 160010, "17.0.1": 170001} {
		if got, problem := postgresVersionNum(in); got != want || problem != "" {
			t.Errorf("postgresVersionNum(%q) = %d %q, want %d", in, got, problem, want)
		}
	}
	for in, want := range map[string]string{
		"10":      "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 10",
		"9.6":     "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6",
		"1.2.3.4": "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 1.2.3.4",
		"a.b.c":   "Invalid PostgreSQL version: a.b.c",
		"15.x":    "Invalid PostgreSQL version: 15.x",
		"":        "Invalid PostgreSQL version: ",
	} {
		if _, problem := postgresVersionNum(in); problem != want {
			t.Errorf("postgresVersionNum(%q) problem %q, want %q", in, problem, want)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	cases := []struct {
		in   string
		want time.Time
		code int
	}{
		// patronictl 3.0.2 and 4.x send isoformat() of a zoned time.
		{"2030-01-02T03:04:05+00:00", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), 0},
		{"2030-01-02T03:04:05.123456+02:00", time.Date(2030, 1, 2, 1, 4, 5, 123456000, time.UTC), 0},
		{"2030-01-02T03:04:05Z", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), 0},
		{"2030-01-02 03:04:05+0100", time.Date(2030, 1, 2, 2, 4, 5, 0, time.UTC), 0},
		{"2030-01-02T03:04+00:00", time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC), 0},
		{"2030-01-02T03:04:05", time.Time{}, 400},
		{"2030-01-02 03:04", time.Time{}, 400},
		{"2030-01-02", time.Time{}, 400},
		{"2020-01-02T03:04:05+00:00", time.Time{}, 422},
		{"now", time.Time{}, 422},
		{"", time.Time{}, 422},
	}
	for _, c := range cases {
		got, code, msg := parseSchedule(c.in, "restart", testNow)
		if code != c.code || !got.Equal(c.want) || (code == 0) != (msg == "") {
			t.Errorf("parseSchedule(%q) = %v %d %q; want %v %d", c.in, got, code, msg, c.want, c.code)
		}
	}
}

// FuzzOperationBodies sends arbitrary bodies to every mutating endpoint:
// no panic, and only the status codes Patroni's endpoints answer with.
func FuzzOperationBodies(f *testing.F) {
	for _, seed := range []string{
		`{"leader":"node1","candidate":"node2","scheduled_at":"2030-01-01T00:00:00+00:00"}`,
		`{"candidate":"node2"}`, `{"schedule":"2030-01-01T00:00:00Z","role":"replica","timeout":"1min"}`,
		`{"postgres_version":"15.2","restart_pending":true}`, `{"force":true,"from_leader":1}`,
		`{"ttl":40,"postgresql":{"parameters":{"work_mem":null}}}`, `{"pause":null}`, `[]`, `null`, `{"a":{"b":[1,{"c":null}]}}`,
	} {
		f.Add(seed)
	}
	allowed := map[int]bool{200: true, 202: true, 400: true, 404: true, 409: true, 412: true, 422: true, 500: true, 502: true, 503: true}
	f.Fuzz(func(t *testing.T, body string) {
		for _, r := range []struct{ method, path string }{
			{http.MethodPost, "/switchover"}, {http.MethodPost, "/failover"}, {http.MethodPost, "/restart"},
			{http.MethodPost, "/reinitialize"}, {http.MethodPatch, "/config"}, {http.MethodPut, "/config"},
		} {
			op := &fakeOperator{
				clusters: []*cluster.Cluster{opCluster(t, nil), opCluster(t, ledBy("node2"))},
				peers:    map[string]ha.Peer{"node2": healthyPeer("node2")},
				reply:    ha.Reply{Status: ha.ReplyDone},
			}
			code, msg := send(newOpServer(t, op, ServerConfig{}), r.method, r.path, body)
			if !allowed[code] {
				t.Errorf("%s %s %q = %d %q", r.method, r.path, body, code, msg)
			}
		}
	})
}
