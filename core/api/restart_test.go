package api

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

func TestRestartRequests(t *testing.T) {
	future := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		body  string
		reply ha.Reply
		want  ha.Request
		wait  bool
		code  int
		msg   string
	}{
		{
			name: "no body", body: "", reply: ha.Reply{Status: ha.ReplyDone, Message: "restart done"},
			want: ha.Request{Kind: ha.RequestRestart}, wait: true, code: 200, msg: "restarted successfully",
		},
		{
			name: "patronictl 3.0.2 --force", body: `{}`, reply: ha.Reply{Status: ha.ReplyDone, Message: "restart done"},
			want: ha.Request{Kind: ha.RequestRestart}, wait: true, code: 200, msg: "restarted successfully",
		},
		{
			name: "every filter", body: `{"role":"replica","postgres_version":"15.2","timeout":"30s","restart_pending":true}`,
			reply: ha.Reply{Status: ha.ReplyDone, Message: "restart done"},
			want:  ha.Request{Kind: ha.RequestRestart, Role: "replica", PostgresVersion: 150002, Timeout: 30 * time.Second, RestartPending: true},
			wait:  true, code: 200, msg: "restarted successfully",
		},
		{
			name: "patronictl 3.0.2 filters", body: `{"restart_pending": true, "postgres_version": "9.6.24", "timeout": "1min"}`,
			reply: ha.Reply{Status: ha.ReplyDone},
			want:  ha.Request{Kind: ha.RequestRestart, PostgresVersion: 90624, Timeout: time.Minute, RestartPending: true},
			wait:  true, code: 200, msg: "restarted successfully",
		},
		{
			name: "3.0.2 role master", body: `{"role":"master","timeout":45}`, reply: ha.Reply{Status: ha.ReplyDone},
			want: ha.Request{Kind: ha.RequestRestart, Role: "primary", Timeout: 45 * time.Second}, wait: true, code: 200, msg: "restarted successfully",
		},
		{
			name: "standby leader", body: `{"role":"standby_leader","restart_pending":false}`, reply: ha.Reply{Status: ha.ReplyDone},
			want: ha.Request{Kind: ha.RequestRestart, Role: "standby_leader"}, wait: true, code: 200, msg: "restarted successfully",
		},
		{
			name: "conditions not met", body: `{"role":"replica"}`,
			reply: ha.Reply{Status: ha.ReplyRefused, Message: "restart conditions are not satisfied: not a replica"},
			want:  ha.Request{Kind: ha.RequestRestart, Role: "replica"}, wait: true,
			code: 503, msg: "restart conditions are not satisfied: not a replica",
		},
		{
			name: "failed", body: `{}`, reply: ha.Reply{Status: ha.ReplyRefused, Message: "restart failed: postgres did not start within 30s"},
			want: ha.Request{Kind: ha.RequestRestart}, wait: true, code: 503, msg: "restart failed: postgres did not start within 30s",
		},
		{
			name: "busy", body: `{}`, reply: ha.Reply{Status: ha.ReplyConflict, Message: "reinitialize already in progress"},
			want: ha.Request{Kind: ha.RequestRestart}, wait: true, code: 503, msg: "reinitialize already in progress",
		},
		{
			name: "scheduled", body: `{"schedule":"2030-01-01T00:00:00+00:00","role":"primary"}`,
			reply: ha.Reply{Status: ha.ReplyScheduled, Message: "Restart scheduled"},
			want:  ha.Request{Kind: ha.RequestRestart, Role: "primary", Schedule: &future},
			code:  202, msg: "Restart scheduled",
		},
		{
			name: "scheduled twice", body: `{"schedule":"2030-01-01T01:00:00+01:00"}`,
			reply: ha.Reply{Status: ha.ReplyConflict, Message: "Another restart is already scheduled"},
			want:  ha.Request{Kind: ha.RequestRestart, Schedule: &future},
			code:  409, msg: "Another restart is already scheduled",
		},
		{
			name: "paused in the loop", body: `{"schedule":"2030-01-01T00:00:00Z"}`,
			reply: ha.Reply{Status: ha.ReplyRefused, Message: "Can't schedule restart in the paused state"},
			want:  ha.Request{Kind: ha.RequestRestart, Schedule: &future},
			code:  500, msg: "Can't schedule restart in the paused state",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}, reply: c.reply}
			code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/restart", c.body)
			expectAnswer(t, "POST /restart "+c.body, code, body, c.code, c.msg)
			if len(op.requests) != 1 {
				t.Fatalf("requests %v, want one", op.requests)
			}
			got := op.requests[0]
			if (got.Schedule == nil) != (c.want.Schedule == nil) || (got.Schedule != nil && !got.Schedule.Equal(*c.want.Schedule)) {
				t.Errorf("schedule %v, want %v", got.Schedule, c.want.Schedule)
			}
			got.Schedule, c.want.Schedule = nil, nil
			if !reflect.DeepEqual(got, c.want) || op.waits[0] != c.wait {
				t.Errorf("request %+v wait=%v, want %+v wait=%v", got, op.waits[0], c.want, c.wait)
			}
		})
	}
}

func TestRestartRefusedBeforeTheLoop(t *testing.T) {
	cases := []struct {
		name, config, body string
		code               int
		msg                string
	}{
		{"unknown key", "", `{"foo":1}`, 400, "Unknown filter for the scheduled restart: foo"},
		{"bad role", "", `{"role":"leader"}`, 400, "PostgreSQL role should be either primary, standby_leader, or replica"},
		{"role not a string", "", `{"role":true}`, 400, "PostgreSQL role should be either primary, standby_leader, or replica"},
		{"version without minor", "", `{"postgres_version":"15"}`, 400, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 15"},
		{"old version without patch", "", `{"postgres_version":"9.6"}`, 400, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6"},
		{"version not numeric", "", `{"postgres_version":"a.b.c"}`, 400, "Invalid PostgreSQL version: a.b.c"},
		{"version a number", "", `{"postgres_version":15.2}`, 400, "Invalid PostgreSQL version: 15.2"},
		{"timeout zero", "", `{"timeout":0}`, 400, "Timeout should be a positive number of seconds"},
		{"timeout negative", "", `{"timeout":"-5s"}`, 400, "Timeout should be a positive number of seconds"},
		{"timeout unit", "", `{"timeout":"5 parsecs"}`, 400, "Timeout should be a positive number of seconds"},
		{"timeout not a number", "", `{"timeout":"soon"}`, 400, "Timeout should be a positive number of seconds"},
		{"schedule without zone", "", `{"schedule":"2030-01-01 10:00"}`, 400, "Timezone information is mandatory for the scheduled restart"},
		{"schedule in the past", "", `{"schedule":"2024-01-01T00:00:00+00:00"}`, 422, "Cannot schedule restart in the past"},
		{"schedule unparsable", "", `{"schedule":"next tuesday"}`, 422, msgUnparsableSchedule},
		{"schedule while paused", pausedConfig, `{"schedule":"2030-01-01T00:00:00+00:00"}`, 500, "Can't schedule restart in the paused state"},
		{"paused wins over a bad schedule", pausedConfig, `{"schedule":"yesterday"}`, 500, "Can't schedule restart in the paused state"},
		{"not an object", "", `[1]`, 400, "the request body is not a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var op fakeOperator
			if c.config != "" {
				op.clusters = []*cluster.Cluster{opCluster(t, withConfig(c.config))}
			} else {
				op.clusters = []*cluster.Cluster{opCluster(t, nil)}
			}
			code, body := send(newOpServer(t, &op, ServerConfig{}), http.MethodPost, "/restart", c.body)
			expectAnswer(t, "POST /restart "+c.body, code, body, c.code, c.msg)
			if len(op.requests) != 0 {
				t.Errorf("the loop got %v", op.requests)
			}
		})
	}
}

func TestRestartLoopUnavailable(t *testing.T) {
	op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}, requestErr: context.DeadlineExceeded}
	code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/restart", `{}`)
	expectAnswer(t, "POST /restart", code, body, 503, "restart failed: context deadline exceeded")
}

func TestDeleteRestart(t *testing.T) {
	op := &fakeOperator{reply: ha.Reply{Status: ha.ReplyDone, Message: "scheduled restart deleted"}}
	s := newOpServer(t, op, ServerConfig{})
	code, body := send(s, http.MethodDelete, "/restart", "")
	expectAnswer(t, "DELETE /restart", code, body, 200, "scheduled restart deleted")
	op.reply = ha.Reply{Status: ha.ReplyNotFound, Message: "no restarts are scheduled"}
	code, body = send(s, http.MethodDelete, "/restart", "")
	expectAnswer(t, "DELETE /restart", code, body, 404, "no restarts are scheduled")
	for _, r := range op.requests {
		if r.Kind != ha.RequestCancelRestart {
			t.Errorf("request %+v, want cancel_restart", r)
		}
	}
	if len(op.requests) != 2 || op.waits[0] {
		t.Errorf("requests %v waits %v", op.requests, op.waits)
	}
}

func TestReinitialize(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		reply ha.Reply
		want  ha.Request
		code  int
		msg   string
	}{
		{"no body", "", ha.Reply{Status: ha.ReplyStarted, Message: "reinitialize started"}, ha.Request{Kind: ha.RequestReinitialize}, 200, "reinitialize started"},
		{"patronictl 3.0.2", `{"force": false}`, ha.Reply{Status: ha.ReplyStarted}, ha.Request{Kind: ha.RequestReinitialize}, 200, "reinitialize started"},
		{"patronictl 4.x --force --from-leader", `{"force":true,"from_leader":true}`, ha.Reply{Status: ha.ReplyStarted},
			ha.Request{Kind: ha.RequestReinitialize, Force: true, FromLeader: true}, 200, "reinitialize started"},
		{"strings as booleans", `{"force":"yes","from_leader":"off"}`, ha.Reply{Status: ha.ReplyStarted},
			ha.Request{Kind: ha.RequestReinitialize, Force: true}, 200, "reinitialize started"},
		{"on the leader", `{}`, ha.Reply{Status: ha.ReplyRefused, Message: "I am the leader, can not reinitialize"},
			ha.Request{Kind: ha.RequestReinitialize}, 503, "I am the leader, can not reinitialize"},
		{"no leader", `{}`, ha.Reply{Status: ha.ReplyRefused, Message: "Cluster has no leader, can not reinitialize"},
			ha.Request{Kind: ha.RequestReinitialize}, 503, "Cluster has no leader, can not reinitialize"},
		{"busy", `{"force":false}`, ha.Reply{Status: ha.ReplyConflict, Message: "create_replica already in progress"},
			ha.Request{Kind: ha.RequestReinitialize}, 503, "create_replica already in progress"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op := &fakeOperator{reply: c.reply}
			code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/reinitialize", c.body)
			expectAnswer(t, "POST /reinitialize "+c.body, code, body, c.code, c.msg)
			if len(op.requests) != 1 || !reflect.DeepEqual(op.requests[0], c.want) || op.waits[0] {
				t.Errorf("requests %+v waits %v, want %+v without waiting", op.requests, op.waits, c.want)
			}
		})
	}
}

func TestReload(t *testing.T) {
	op := &fakeOperator{}
	code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/reload", "")
	expectAnswer(t, "POST /reload", code, body, 202, "reload scheduled")
	if op.reloads != 1 {
		t.Errorf("reloads %d, want 1", op.reloads)
	}
}

// Every mutating endpoint checks access first: without credentials it
// answers 401 and the operator is never asked anything.
func TestOperationsNeedAuth(t *testing.T) {
	routes := []struct{ method, path, body string }{
		{http.MethodPost, "/switchover", `{"leader":"node1","candidate":"node2"}`},
		{http.MethodPost, "/failover", `{"candidate":"node2"}`},
		{http.MethodDelete, "/switchover", ""},
		{http.MethodPost, "/restart", `{}`},
		{http.MethodDelete, "/restart", ""},
		{http.MethodPost, "/reinitialize", `{"force":true}`},
		{http.MethodPost, "/reload", ""},
		{http.MethodPatch, "/config", `{"pause":true}`},
		{http.MethodPut, "/config", `{"ttl":30}`},
	}
	cfg := ServerConfig{Username: "admin", Password: "secret"}
	for _, r := range routes {
		op := &fakeOperator{
			clusters: []*cluster.Cluster{opCluster(t, nil), opCluster(t, ledBy("node2"))},
			peers:    map[string]ha.Peer{"node2": healthyPeer("node2")},
			reply:    ha.Reply{Status: ha.ReplyDone},
		}
		s := newOpServer(t, op, cfg)
		for _, auth := range []string{"", basicAuthHeader("admin", "wrong")} {
			rec := sendRecorded(s, r.method, r.path, r.body, func(req *http.Request) {
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
			})
			if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") != authRealm {
				t.Errorf("%s %s with auth %q = %d (WWW-Authenticate %q), want 401", r.method, r.path, auth, rec.Code, rec.Header().Get("WWW-Authenticate"))
			}
		}
		if op.touched() {
			t.Errorf("%s %s without credentials reached the operator", r.method, r.path)
		}
		rec := sendRecorded(s, r.method, r.path, r.body, func(req *http.Request) {
			req.Header.Set("Authorization", basicAuthHeader("admin", "secret"))
		})
		if rec.Code == http.StatusUnauthorized || !op.touched() {
			t.Errorf("%s %s with credentials = %d %q and touched=%v", r.method, r.path, rec.Code, rec.Body, op.touched())
		}
	}
}

// Without an Operator the server is read-only: mutating paths are unknown.
func TestReadOnlyServer(t *testing.T) {
	s := newTestServer(primarySnapshot(t), ServerConfig{})
	code, body := send(s, http.MethodPost, "/restart", `{}`)
	expectAnswer(t, "POST /restart", code, body, 501, "Unsupported method")
}
