package api

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

const (
	pausedConfig = `{"ttl":30,"loop_wait":10,"retry_timeout":10,"pause":true}`
	syncConfig   = `{"ttl":30,"loop_wait":10,"retry_timeout":10,"synchronous_mode":true}`
	quorumConfig = `{"ttl":30,"loop_wait":10,"retry_timeout":10,"synchronous_mode":"quorum"}`
)

func noFailover(raw *dcs.Cluster) { raw.Failover = nil }

// cleared is /failover reset to {}.
func cleared(raw *dcs.Cluster) { raw.Failover = &dcs.Value{Data: []byte(`{}`), Version: "22"} }

// ledBy makes name the leader; "" unlocks the cluster.
func ledBy(name string) func(*dcs.Cluster) {
	return func(raw *dcs.Cluster) {
		if name == "" {
			raw.Leader = nil
			return
		}
		raw.Leader = &dcs.Leader{Name: name, Version: "40"}
	}
}

func both(edits ...func(*dcs.Cluster)) func(*dcs.Cluster) {
	return func(raw *dcs.Cluster) {
		for _, e := range edits {
			e(raw)
		}
	}
}

func TestSwitchoverRefusals(t *testing.T) {
	cases := []struct {
		name   string
		path   string
		config string
		body   string
		peers  []string
		code   int
		msg    string
	}{
		{"no leader", "/switchover", "", `{"candidate":"node2"}`, nil, 400, "Switchover could be performed only from a specific leader"},
		{"failover without candidate", "/failover", "", `{"leader":"node1"}`, nil, 400, "Failover could be performed only to a specific candidate"},
		{"failover scheduled", "/failover", "", `{"candidate":"node2","scheduled_at":"2030-01-01T00:00:00+00:00"}`, nil, 400, "Failover can't be scheduled"},
		{"same target", "/switchover", "", `{"leader":"node1","candidate":"node1"}`, nil, 400, "Switchover target and source are the same"},
		{"failover with leader to itself", "/failover", "", `{"leader":"node1","candidate":"node1"}`, nil, 400, "Switchover target and source are the same"},
		{"scheduled while paused", "/switchover", pausedConfig, `{"leader":"node1","candidate":"node2","scheduled_at":"2030-01-01T00:00:00+00:00"}`, nil, 400, "Can't schedule switchover in the paused state"},
		{"paused without candidate", "/switchover", pausedConfig, `{"leader":"node1"}`, nil, 400, "Switchover is possible only to a specific candidate in a paused state"},
		{"schedule without zone", "/switchover", "", `{"leader":"node1","scheduled_at":"2030-01-01T00:00:00"}`, nil, 400, "Timezone information is mandatory for the scheduled switchover"},
		{"schedule unparsable", "/switchover", "", `{"leader":"node1","scheduled_at":"tomorrow"}`, nil, 422, msgUnparsableSchedule},
		{"schedule not a string", "/switchover", "", `{"leader":"node1","scheduled_at":12}`, nil, 422, msgUnparsableSchedule},
		{"schedule in the past", "/switchover", "", `{"leader":"node1","scheduled_at":"2020-01-01T00:00:00+00:00"}`, nil, 422, "Cannot schedule switchover in the past"},
		{"leader mismatch", "/switchover", "", `{"leader":"node2","candidate":"node3"}`, []string{"node3"}, 412, "leader name does not match"},
		{"unknown candidate", "/switchover", "", `{"leader":"node1","candidate":"node9"}`, nil, 412, "candidate does not exists"},
		{"candidate down", "/switchover", "", `{"leader":"node1","candidate":"node2"}`, nil, 412, "switchover is not possible: no good candidates have been found"},
		{"nobody healthy", "/switchover", "", `{"leader":"node1"}`, nil, 412, "switchover is not possible: no good candidates have been found"},
		{"failover candidate down", "/failover", "", `{"candidate":"node2"}`, nil, 412, "failover is not possible: no good candidates have been found"},
		{"candidate not sync", "/switchover", syncConfig, `{"leader":"node1","candidate":"node3"}`, []string{"node3"}, 412, "candidate name does not match with sync_standby"},
		{"leader is a string", "/switchover", "", `{"leader":1}`, nil, 400, "leader must be a string, not a number"},
		{"empty object", "/switchover", "", `{}`, nil, 400, "the request body is an empty JSON object"},
		{"not an object", "/switchover", "", `["node1"]`, nil, 400, "the request body is not a JSON object"},
		{"not JSON", "/switchover", "", `leader=node1`, nil, 400, "the request body is not JSON: invalid character 'l' looking for beginning of value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var edit func(*dcs.Cluster)
			if c.config != "" {
				edit = withConfig(c.config)
			}
			op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, edit)}, peers: map[string]ha.Peer{}}
			for _, p := range c.peers {
				op.peers[p] = healthyPeer(p)
			}
			code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, c.path, c.body)
			expectAnswer(t, "POST "+c.path+" "+c.body, code, body, c.code, c.msg)
			if len(op.failoverWrites) > 0 || op.wakes > 0 {
				t.Errorf("a refused request wrote %v and woke the loop %d times", op.failoverWrites, op.wakes)
			}
		})
	}
}

func TestSwitchoverWithoutBody(t *testing.T) {
	op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}}
	s := newOpServer(t, op, ServerConfig{})
	rec := sendRecorded(s, http.MethodPost, "/switchover", `{"leader":"node1"}`, func(r *http.Request) { r.ContentLength = -1 })
	expectAnswer(t, "POST /switchover without Content-Length", rec.Code, rec.Body.String(), 411, "Length Required: a JSON body with a Content-Length is expected")
	code, body := send(s, http.MethodPost, "/switchover", "")
	expectAnswer(t, "POST /switchover with an empty body", code, body, 400, "the request body is not JSON: EOF")
}

// The candidates asked: only the named one, else every member but the
// leader with an api_url, else (sync mode) the synchronous standbys.
func TestSwitchoverAsksTheRightPeers(t *testing.T) {
	cases := []struct {
		name, config, body string
		healthy            []string
		want               int
		asked              []string
	}{
		{"candidate only", "", `{"leader":"node1","candidate":"node2"}`, []string{"node2", "node3"}, 200, []string{"node2"}},
		{"any member", "", `{"leader":"node1"}`, []string{"node2"}, 200, []string{"node2", "node3", "node4"}},
		{"sync standbys", syncConfig, `{"leader":"node1"}`, []string{"node2"}, 200, []string{"node2"}},
		{"quorum: any candidate", quorumConfig, `{"leader":"node1","candidate":"node3"}`, []string{"node3"}, 200, []string{"node3"}},
		{"nofailover peer is no candidate", "", `{"leader":"node1"}`, nil, 412, []string{"node2", "node3", "node4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var edit func(*dcs.Cluster)
			if c.config != "" {
				edit = withConfig(c.config)
			}
			op := &fakeOperator{
				clusters: []*cluster.Cluster{opCluster(t, edit), opCluster(t, ledBy("node2"))},
				peers:    map[string]ha.Peer{},
			}
			for _, p := range c.healthy {
				op.peers[p] = healthyPeer(p)
			}
			if c.name == "nofailover peer is no candidate" {
				op.peers["node3"] = ha.Peer{Name: "node3", Reachable: true, Running: true, NoFailover: true}
			}
			code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/switchover", c.body)
			if code != c.want {
				t.Fatalf("POST /switchover %s = %d %q, want %d", c.body, code, body, c.want)
			}
			asked := slices.Sorted(slices.Values(op.peerCalls))
			if !slices.Equal(asked, c.asked) {
				t.Errorf("asked %v, want %v", asked, c.asked)
			}
		})
	}
}

func TestSwitchoverOutcomes(t *testing.T) {
	cases := []struct {
		name  string
		path  string
		body  string
		start func(*dcs.Cluster)
		after []func(*dcs.Cluster)
		write string
		code  int
		msg   string
	}{
		{
			name: "switched", path: "/switchover", body: `{"leader":"node1","candidate":"node2"}`,
			// Unlocked while the leader demotes, then node2 takes over.
			after: []func(*dcs.Cluster){ledBy(""), both(ledBy("node2"), cleared)},
			write: `{"leader":"node1","member":"node2"}`, code: 200, msg: `Successfully switched over to "node2"`,
		},
		{
			name: "member alias", path: "/switchover", body: `{"leader":"node1","member":"node2"}`,
			write: `{"leader":"node1","member":"node2"}`, code: 200, msg: `Successfully switched over to "node2"`,
		},
		{
			name: "patronictl 3.0.2 switchover", path: "/switchover", body: `{"leader": "node1", "candidate": "node2", "scheduled_at": null}`,
			write: `{"leader":"node1","member":"node2"}`, code: 200, msg: `Successfully switched over to "node2"`,
		},
		{
			name: "patronictl 4.x switchover without candidate", path: "/switchover", body: `{"leader":"node1","candidate":null,"scheduled_at":null}`,
			write: `{"leader":"node1"}`, code: 200, msg: `Successfully switched over to "node2"`,
		},
		{
			name: "another member took over", path: "/switchover", body: `{"leader":"node1","candidate":"node3"}`,
			after: []func(*dcs.Cluster){ledBy("node2")},
			write: `{"leader":"node1","member":"node3"}`, code: 200, msg: `Switched over to "node2" instead of "node3"`,
		},
		{
			name: "4.x failover", path: "/failover", body: `{"candidate":"node2"}`,
			write: `{"member":"node2"}`, code: 200, msg: `Successfully failed over to "node2"`,
		},
		{
			name: "4.x failover to another", path: "/failover", body: `{"candidate":"node3"}`,
			after: []func(*dcs.Cluster){ledBy("node2")},
			write: `{"member":"node3"}`, code: 200, msg: `Failed over to "node2" instead of "node3"`,
		},
		{
			name: "patronictl 3.0.2 failover is a switchover", path: "/failover", body: `{"leader": "node1", "candidate": "node2", "scheduled_at": null}`,
			write: `{"leader":"node1","member":"node2"}`, code: 200, msg: `Successfully switched over to "node2"`,
		},
		{
			name: "failover without a leader", path: "/failover", body: `{"candidate":"node2"}`, start: both(noFailover, ledBy("")),
			write: `{"member":"node2"}`, code: 200, msg: `Successfully failed over to "node2"`,
		},
		{
			name: "failed", path: "/switchover", body: `{"leader":"node1","candidate":"node2"}`,
			after: []func(*dcs.Cluster){both(ledBy("node1"), cleared)},
			write: `{"leader":"node1","member":"node2"}`, code: 503, msg: "Switchover failed",
		},
		{
			name: "failover failed", path: "/failover", body: `{"candidate":"node2"}`,
			after: []func(*dcs.Cluster){both(ledBy("node1"), cleared)},
			write: `{"member":"node2"}`, code: 503, msg: "Failover failed",
		},
		{
			name: "no news", path: "/switchover", body: `{"leader":"node1","candidate":"node2"}`,
			after: []func(*dcs.Cluster){nil},
			write: `{"leader":"node1","member":"node2"}`, code: 503, msg: "Switchover status unknown",
		},
		{
			name: "scheduled", path: "/switchover", body: `{"leader":"node1","candidate":"node2","scheduled_at":"2030-06-01T12:30:00+02:00"}`,
			write: `{"leader":"node1","member":"node2","scheduled_at":"2030-06-01T12:30:00+02:00"}`, code: 202, msg: "Switchover scheduled",
		},
		{
			name: "patronictl 3.0.2 scheduled", path: "/switchover", body: `{"leader": "node1", "candidate": null, "scheduled_at": "2030-06-01T12:30:00.250000+00:00"}`,
			write: `{"leader":"node1","scheduled_at":"2030-06-01T12:30:00.25+00:00"}`, code: 202, msg: "Switchover scheduled",
		},
		{
			name: "paused with candidate", path: "/switchover", body: `{"leader":"node1","candidate":"node2"}`, start: withConfig(pausedConfig),
			write: `{"leader":"node1","member":"node2"}`, code: 200, msg: `Successfully switched over to "node2"`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clusters := []*cluster.Cluster{opCluster(t, c.start)}
			for _, a := range c.after {
				clusters = append(clusters, opCluster(t, a))
			}
			if len(c.after) == 0 {
				clusters = append(clusters, opCluster(t, ledBy("node2")))
			}
			op := &fakeOperator{clusters: clusters, peers: map[string]ha.Peer{"node2": healthyPeer("node2"), "node3": healthyPeer("node3")}}
			code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, c.path, c.body)
			expectAnswer(t, "POST "+c.path+" "+c.body, code, body, c.code, c.msg)
			if len(op.failoverWrites) != 1 || op.failoverWrites[0] != (failoverWrite{c.write, ""}) {
				t.Errorf("/failover writes %v, want one unconditional write of %s", op.failoverWrites, c.write)
			}
			if op.wakes != 1 {
				t.Errorf("the HA loop was woken %d times, want once right after the write", op.wakes)
			}
		})
	}
}

func TestSwitchoverWriteFails(t *testing.T) {
	op := &fakeOperator{
		clusters:    []*cluster.Cluster{opCluster(t, nil)},
		peers:       map[string]ha.Peer{"node2": healthyPeer("node2")},
		failoverErr: dcs.ErrUnavailable,
	}
	code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/switchover", `{"leader":"node1","candidate":"node2"}`)
	expectAnswer(t, "POST /switchover", code, body, 503, "failed to write failover key into DCS")
	if op.wakes != 0 {
		t.Error("the loop was woken after a failed write")
	}
}

func TestSwitchoverDCSDown(t *testing.T) {
	op := &fakeOperator{readErr: dcs.ErrUnavailable}
	code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/switchover", `{"leader":"node1","candidate":"node2"}`)
	if code != 503 || len(op.failoverWrites) != 0 {
		t.Errorf("POST /switchover with the DCS down = %d %q, writes %v", code, body, op.failoverWrites)
	}
}

func TestSwitchoverNoMembersButLeader(t *testing.T) {
	onlyLeader := func(raw *dcs.Cluster) { raw.Members = raw.Members[1:2] }
	op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, onlyLeader)}}
	code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/switchover", `{"leader":"node1"}`)
	expectAnswer(t, "POST /switchover", code, body, 412, "switchover is not possible: cluster does not have members except leader")
	op = &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, both(withConfig(syncConfig), func(raw *dcs.Cluster) { raw.Sync = nil }))}}
	code, body = send(newOpServer(t, op, ServerConfig{}), http.MethodPost, "/switchover", `{"leader":"node1"}`)
	expectAnswer(t, "POST /switchover in sync mode", code, body, 412, "switchover is not possible: can not find sync_standby")
}

func TestDeleteSwitchover(t *testing.T) {
	op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}}
	s := newOpServer(t, op, ServerConfig{})
	code, body := send(s, http.MethodDelete, "/switchover", "")
	expectAnswer(t, "DELETE /switchover", code, body, 200, "scheduled switchover deleted")
	if len(op.failoverWrites) != 1 || op.failoverWrites[0] != (failoverWrite{"{}", "21"}) {
		t.Errorf("writes %v, want {} over version 21", op.failoverWrites)
	}

	op.clusters = []*cluster.Cluster{opCluster(t, cleared)}
	code, body = send(s, http.MethodDelete, "/switchover", "")
	expectAnswer(t, "DELETE /switchover with /failover {}", code, body, 404, "no switchover is scheduled")
	op.clusters = []*cluster.Cluster{opCluster(t, noFailover)}
	code, body = send(s, http.MethodDelete, "/switchover", "")
	expectAnswer(t, "DELETE /switchover without /failover", code, body, 404, "no switchover is scheduled")
	op.clusters = []*cluster.Cluster{opCluster(t, func(raw *dcs.Cluster) {
		raw.Failover = &dcs.Value{Data: []byte(`{"leader":"node1","member":"node2"}`), Version: "23"}
	})}
	code, body = send(s, http.MethodDelete, "/switchover", "")
	expectAnswer(t, "DELETE /switchover of an unscheduled one", code, body, 404, "no switchover is scheduled")

	op.clusters = []*cluster.Cluster{opCluster(t, nil)}
	op.failoverErr = errors.Join(errors.New("compare-and-set"), dcs.ErrVersionMismatch)
	code, body = send(s, http.MethodDelete, "/switchover", "")
	expectAnswer(t, "DELETE /switchover after a concurrent change", code, body, 409, "Conflict: /failover changed since it was read")
}

// Through the real HTTP stack, with authentication and debug logging (the
// status recorder must let the handler extend its write deadline).
func TestSwitchoverOverHTTP(t *testing.T) {
	op := &fakeOperator{
		clusters: []*cluster.Cluster{opCluster(t, nil), opCluster(t, ledBy("")), opCluster(t, both(ledBy("node2"), cleared))},
		peers:    map[string]ha.Peer{"node2": healthyPeer("node2")},
	}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: io.Discard})
	s := New(ServerConfig{Username: "admin", Password: "secret"}, fixedSource{primarySnapshot(t)}, logger, WithOperator(op))
	s.pollInterval = 10 * time.Millisecond
	addr := serve(t, s)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/switchover", strings.NewReader(`{"leader": "node1", "candidate": "node2", "scheduled_at": null}`))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", "secret")
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: ioTimeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	expectAnswer(t, "POST /switchover over HTTP", resp.StatusCode, string(body), 200, `Successfully switched over to "node2"`)
	client.CloseIdleConnections()
}
