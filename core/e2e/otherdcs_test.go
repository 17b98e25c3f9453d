//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
	"github.com/custos-ha/custos/testkit/servers"
)

// Clusters on Consul and on Kubernetes: the agents of the etcd tests, with
// a configuration that differs only in its [dcs.*] section, form a cluster,
// fail over after the primary's agent and postmaster are SIGKILLed, and take
// the old primary back as a replica.

// TestConsul runs a cluster on a Consul dev agent. The leader key goes with
// the dead primary's session: Consul invalidates it (TTL ttl/2, invalidated
// up to twice that after the last renewal) and deletes the key.
func TestConsul(t *testing.T) {
	t.Parallel()
	srv, err := servers.StartConsul(servers.ConsulConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consul log:\n%s", srv.Log())
		}
		srv.Stop()
	})
	d := newConsulDCS(t, srv)
	failoverOn(t, d, dcsChecks{
		formed: func(t *testing.T, v dcsView) {
			// One session per member holds its member key and, for the
			// leader, the leader key.
			sessions := map[string]string{}
			for k, kv := range v.kv {
				if name, ok := strings.CutPrefix(k, "members/"); ok {
					if sessions[kv.Meta["session"]] != "" || kv.Meta["session"] == "" {
						t.Errorf("%s: held by session %q, shared or none: %v", k, kv.Meta["session"], sessions)
					}
					sessions[kv.Meta["session"]] = name
				}
			}
			if s := v.meta("leader", "session"); sessions[s] != v.leader() {
				t.Errorf("the leader key (%s) is held by session %q, which holds the member key of %q", v.leader(), s, sessions[s])
			}
		},
		takeover: func(t *testing.T, killed, after dcsView) {
			oldSession := killed.meta("leader", "session")
			if s := after.meta("leader", "session"); s == "" || s == oldSession {
				t.Errorf("the new leader key is held by session %q, the old one by %q", s, oldSession)
			}
			if alive, err := d.sessionExists(oldSession); err != nil || alive {
				t.Errorf("the old primary's session %s still exists (%v): the key went away some other way", oldSession, err)
			}
		},
	})
}

// TestKubernetes runs a cluster on kube-apiserver. Nothing expires on the
// server: the replicas judge the leader record on their own clocks and take
// it over once it is ttl old.
func TestKubernetes(t *testing.T) {
	t.Parallel()
	srv, err := servers.StartKube(servers.KubeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", srv.Logs())
		}
		srv.Stop()
	})
	d := &kubeDCS{srv: srv}
	failoverOn(t, d, dcsChecks{
		formed: func(t *testing.T, v dcsView) {
			if got := v.meta("leader", "ttl"); got != strconv.Itoa(int(ttl/time.Second)) {
				t.Errorf("the leader record's ttl annotation is %q, want %d", got, int(ttl/time.Second))
			}
		},
		takeover: func(t *testing.T, killed, after dcsView) {
			renewed, err1 := parseKubeTime(killed.meta("leader", "renewTime"))
			acquired, err2 := parseKubeTime(after.meta("leader", "acquireTime"))
			if err1 != nil || err2 != nil {
				t.Fatalf("leader record times: %v %v", err1, err2)
			}
			// Both times come from this machine's clock.
			if gap := acquired.Sub(renewed); gap < ttl-kubeClockSlack {
				t.Errorf("the leader record was taken over %v after its last renewal, before it was ttl (%v) old", gap, ttl)
			} else {
				t.Logf("the leader record was taken over %v after its last renewal (ttl %v)", gap.Round(time.Millisecond), ttl)
			}
		},
	})
}

// kubeClockSlack allows for the rounding of the leader record's times.
const kubeClockSlack = 10 * time.Millisecond

// dcsChecks look at how a DCS holds the cluster: formed at the formed
// cluster; takeover right after the kill and right after the takeover.
type dcsChecks struct {
	formed   func(t *testing.T, v dcsView)
	takeover func(t *testing.T, killed, after dcsView)
}

// failoverOn runs the scenario on d.
func failoverOn(t *testing.T, d dcsServer, checks dcsChecks) {
	start := time.Now()
	c := startCluster(t, clusterOpts{dcs: d})
	for _, m := range c.m {
		assertOnlyDCSDiffers(t, m)
	}

	// (a) One primary, two streaming replicas, every member in the DCS.
	old := c.waitHealthy(t, formTimeout)
	t.Logf("formed in %v with %s as primary", time.Since(start).Round(time.Millisecond), old.name)
	c.guardSinglePrimary(t)
	v := c.mustDCS(t)
	for _, m := range c.m {
		if v.kv["members/"+m.name] == nil {
			t.Errorf("no member record for %s in the DCS: %v", m.name, v.keys())
		}
	}
	if v.leader() != old.name {
		t.Errorf("leader key %q, want %s", v.leader(), old.name)
	}
	checks.formed(t, v)
	old.exec(t, "create table e2e (id serial primary key, note text)")
	old.exec(t, "insert into e2e (note) values ('before the crash')")
	for _, r := range c.others(old) {
		r.waitRow(t, "before the crash", formTimeout)
	}
	oldTL := mustStatus(t, old).Timeline
	offsets := map[string]int64{}
	for _, r := range c.others(old) {
		offsets[r.name] = r.logSize()
	}

	// (b) SIGKILL of the primary's agent and postmaster: a replica takes
	// over once the leader record expires.
	old.kill(t, agentAndPostmaster, syscall.SIGKILL)
	killedAt := time.Now()
	killed := c.mustDCS(t)
	if killed.leader() != old.name {
		t.Fatalf("leader %q right after the kill, want %s", killed.leader(), old.name)
	}
	var (
		next  *member
		after dcsView
	)
	poll.Eventually(t, failoverTimeout, "a replica to take the leader key and run as primary", func() error {
		var err error
		if after, err = c.dcs(); err != nil {
			return err
		}
		name := after.leader()
		if name == "" || name == old.name {
			return fmt.Errorf("leader key %q", name)
		}
		next = c.member(name)
		if ok, err := next.writable(); err != nil || !ok {
			return fmt.Errorf("%s holds the key; writable %v %v", name, ok, err)
		}
		return nil
	})

	t.Logf("%s promoted %v after the kill", next.name, time.Since(killedAt).Round(time.Millisecond))
	checks.takeover(t, killed, after)
	for _, cy := range next.cyclesSince(offsets[next.name]) {
		if cy.has("acquire_leader") && cy.err == "" {
			t.Logf("%s: the cycle that took the leader key (woken by %s): %s", next.name, cy.trigger, cy.line)
			break
		}
	}
	next.exec(t, "insert into e2e (note) values ('after the failover')")
	newTL := 0
	poll.Eventually(t, formTimeout, next.name+" to report a primary on a new timeline", func() error {
		st, err := next.status()
		if err != nil {
			return err
		}
		if st.Role != "primary" || st.Timeline <= oldTL {
			return fmt.Errorf("role %q timeline %d, the old primary's was %d", st.Role, st.Timeline, oldTL)
		}
		newTL = st.Timeline
		return nil
	})

	c.waitHealthy(t, failoverTimeout) // the third member follows the new primary

	// (c) The old primary, started again, rejoins as a replica of the new
	// one.
	rejoin := time.Now()
	old.restart(t)
	poll.Eventually(t, formTimeout, old.name+" to stream from "+next.name+" on the new timeline", func() error {
		st, err := old.status()
		if err != nil {
			return err
		}
		if st.Role != "replica" || st.State != "running" || st.ReplicationState != "streaming" || st.Timeline != newTL {
			return fmt.Errorf("role %q state %q replication %q timeline %d", st.Role, st.State, st.ReplicationState, st.Timeline)
		}
		return nil
	})

	old.waitRow(t, "after the failover", formTimeout)
	t.Logf("%s rejoined as a replica in %v", old.name, time.Since(rejoin).Round(time.Millisecond))
	if got := c.waitHealthy(t, formTimeout); got != next {
		t.Errorf("leader %s after the rejoin, want %s", got.name, next.name)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// assertOnlyDCSDiffers checks that the member's configuration file is the
// one it would have on the shared etcd but for the [dcs.*] section: moving
// an agent to another DCS is an edit of that section alone.
func assertOnlyDCSDiffers(t *testing.T, m *member) {
	t.Helper()
	data, err := os.ReadFile(m.configPath)
	if err != nil {
		t.Fatal(err)
	}
	got, gotDCS := splitDCSSection(string(data))
	want, wantDCS := splitDCSSection(m.config(m.etcdSection()))
	if got != want {
		t.Errorf("%s: the configuration differs from the etcd3 one outside [dcs.*]:\n%s\nwant:\n%s", m.name, got, want)
	}
	if gotDCS == wantDCS || !strings.HasPrefix(gotDCS, "[dcs.") || strings.HasPrefix(gotDCS, "[dcs.etcd3]") {
		t.Errorf("%s: DCS section %q, the etcd3 one %q", m.name, gotDCS, wantDCS)
	}
}

// splitDCSSection returns the TOML text without its [dcs.*] section, and
// that section.
func splitDCSSection(text string) (rest, section string) {
	var r, s strings.Builder
	in := false
	for _, l := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(l, "[") {
			in = strings.HasPrefix(l, "[dcs.")
		}
		if in {
			s.WriteString(l)
		} else {
			r.WriteString(l)
		}
	}
	return r.String(), s.String()
}

// meta is the Meta field of key, "" when the key is absent.
func (v dcsView) meta(key, field string) string {
	if kv := v.kv[key]; kv != nil {
		return kv.Meta[field]
	}
	return ""
}

// ---- Consul ----

// consulDCS reads the cluster's keys through Consul's KV HTTP API.
type consulDCS struct {
	srv    *servers.Consul
	client *http.Client
}

func newConsulDCS(t *testing.T, srv *servers.Consul) *consulDCS {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &consulDCS{srv: srv, client: &http.Client{Transport: tr, Timeout: httpTimeout}}
}

func (d *consulDCS) section() (string, []string) {
	return "consul", []string{fmt.Sprintf("host = %q", d.srv.Address)}
}

// read lists <namespace>/<scope>/ (Patroni's Consul keys have no leading
// slash) with a consistent read; Meta["session"] is the session holding a
// key.
func (d *consulDCS) read(ctx context.Context, scope string) (dcsView, error) {
	prefix := "service/" + scope + "/"
	resp, body, err := d.get(ctx, "/v1/kv/"+prefix+"?recurse=true&consistent=true")
	if err != nil {
		return dcsView{}, err
	}
	v := dcsView{kv: map[string]*keyValue{}}
	v.rev, _ = strconv.ParseInt(resp.Header.Get("X-Consul-Index"), 10, 64)
	if resp.StatusCode == http.StatusNotFound {
		return v, nil
	}
	if resp.StatusCode != http.StatusOK {
		return dcsView{}, fmt.Errorf("consul: listing %s: %d %s", prefix, resp.StatusCode, body)
	}
	var pairs []struct {
		Key         string
		Value       []byte // base64 in JSON
		Session     string
		ModifyIndex int64
		CreateIndex int64
	}
	if err := json.Unmarshal(body, &pairs); err != nil {
		return dcsView{}, fmt.Errorf("consul: listing %s: %w", prefix, err)
	}
	for _, p := range pairs {
		v.kv[strings.TrimPrefix(p.Key, prefix)] = &keyValue{
			Value: string(p.Value), ModRevision: p.ModifyIndex, CreateRevision: p.CreateIndex,
			Meta: map[string]string{"session": p.Session},
		}
	}
	return v, nil
}

// sessionExists reports whether Consul still knows the session.
func (d *consulDCS) sessionExists(id string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	resp, body, err := d.get(ctx, "/v1/session/info/"+url.PathEscape(id))
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("consul: session %s: %d %s", id, resp.StatusCode, body)
	}
	var sessions []json.RawMessage
	if err := json.Unmarshal(body, &sessions); err != nil {
		return false, fmt.Errorf("consul: session %s: %w: %s", id, err, body)
	}
	return len(sessions) > 0, nil
}

func (d *consulDCS) get(ctx context.Context, path string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.srv.URL()+path, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("consul: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// ---- Kubernetes ----

// kubeDCS reads the cluster's ConfigMaps through the API server.
type kubeDCS struct{ srv *servers.Kube }

func (d *kubeDCS) section() (string, []string) {
	return "kubernetes", []string{fmt.Sprintf("kubeconfig = %q", d.srv.Kubeconfig)}
}

// read maps Patroni's ConfigMaps (in the default namespace, labelled
// cluster-name=<scope>) back onto keys: the leader record's leader
// annotation is the leader key, whatever its age (readers judge that), the
// config object's annotations are config, initialize and history, and
// <scope>-member-<name> holds members/<name> (where the plugin keeps
// member records outside a Pod). Meta is the object's annotations.
func (d *kubeDCS) read(ctx context.Context, scope string) (dcsView, error) {
	body, err := d.srv.Get(ctx, "/api/v1/namespaces/default/configmaps?labelSelector="+url.QueryEscape("cluster-name="+scope))
	if err != nil {
		return dcsView{}, fmt.Errorf("kubernetes: listing the ConfigMaps of %s: %w", scope, err)
	}
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []struct {
			Metadata struct {
				Name            string            `json:"name"`
				ResourceVersion string            `json:"resourceVersion"`
				Annotations     map[string]string `json:"annotations"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return dcsView{}, fmt.Errorf("kubernetes: listing the ConfigMaps of %s: %w", scope, err)
	}
	v := dcsView{kv: map[string]*keyValue{}}
	v.rev, _ = strconv.ParseInt(list.Metadata.ResourceVersion, 10, 64)
	for _, it := range list.Items {
		ann := it.Metadata.Annotations
		rv, _ := strconv.ParseInt(it.Metadata.ResourceVersion, 10, 64)
		put := func(key, value string) {
			v.kv[key] = &keyValue{Value: value, ModRevision: rv, Meta: ann}
		}
		name := it.Metadata.Name
		switch {
		case name == scope+"-leader":
			if ann["leader"] != "" {
				put("leader", ann["leader"])
			}
		case name == scope+"-config":
			for _, k := range []string{"config", "initialize", "history"} {
				if val, ok := ann[k]; ok {
					put(k, val)
				}
			}
		case strings.HasPrefix(name, scope+"-member-"):
			put("members/"+strings.TrimPrefix(name, scope+"-member-"), ann["status"])
		default:
			// failover, sync: their fields are in Meta.
			put(strings.TrimPrefix(name, scope+"-"), "")
		}
	}
	return v, nil
}

// parseKubeTime reads acquireTime and renewTime as Patroni writes them.
func parseKubeTime(s string) (time.Time, error) {
	return time.Parse("2006-01-02T15:04:05.999999-07:00", s)
}
