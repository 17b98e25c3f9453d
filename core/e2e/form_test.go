//go:build integration

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/custos-ha/custos/testkit/poll"
)

// TestFormCluster: three agents on empty data directories form a cluster
// with one primary and two replicas streaming through their member slots;
// the REST API's health checks, bare HEAD/OPTIONS answers and /metrics are
// what HAProxy and Prometheus expect.
func TestFormCluster(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{})
	primary := c.waitHealthy(t, formTimeout)
	replicas := c.others(primary)

	t.Run("slots", func(t *testing.T) {
		var want []string
		for _, r := range replicas {
			want = append(want, r.name+" active")
		}
		poll.Eventually(t, formTimeout, "an active slot per replica on the primary", func() error {
			got, err := primary.query(`select slot_name || case when active then ' active' else ' inactive' end
				from pg_replication_slots where slot_type = 'physical' order by 1`)
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("slots %q, want %q", got, want)
			}
			return nil
		})

		for _, r := range replicas {
			got, err := r.query("select coalesce(slot_name, '') || ' ' || status from pg_stat_wal_receiver")
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{r.name + " streaming"}; !slices.Equal(got, want) {
				t.Errorf("%s: wal receiver %q, want %q", r.name, got, want)
			}
		}
	})

	t.Run("replication", func(t *testing.T) {
		primary.exec(t, "create table e2e (id serial primary key, note text)")
		primary.exec(t, "insert into e2e (note) values ('written on the primary')")
		for _, r := range replicas {
			r.waitRow(t, "written on the primary", formTimeout)
		}
	})

	t.Run("health checks", func(t *testing.T) {
		for _, m := range c.m {
			isPrimary := m == primary
			for _, check := range []struct {
				path string
				ok   bool
			}{
				{"/primary", isPrimary}, {"/", isPrimary}, {"/read-write", isPrimary}, {"/leader", isPrimary},
				{"/replica", !isPrimary}, {"/read-only", true}, {"/health", true},
			} {
				want := http.StatusServiceUnavailable
				if check.ok {
					want = http.StatusOK
				}
				code, body, err := m.get(check.path)
				if err != nil {
					t.Fatal(err)
				}
				if code != want {
					t.Errorf("%s: GET %s = %d, want %d: %s", m.name, check.path, code, want, body)
				}
				for _, method := range []string{http.MethodHead, http.MethodOptions} {
					got, err := m.rawRequest(method, check.path)
					if err != nil {
						t.Fatalf("%s: %s %s: %v", m.name, method, check.path, err)
					}
					wantLine := fmt.Sprintf("HTTP/1.0 %d %s\r\n\r\n", want, http.StatusText(want))
					if got != wantLine {
						t.Errorf("%s: %s %s answered %q, want exactly %q", m.name, method, check.path, got, wantLine)
					}
				}
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, m := range c.m {
			code, body, err := m.get("/metrics")
			if err != nil || code != http.StatusOK {
				t.Fatalf("%s: GET /metrics = %d, %v", m.name, code, err)
			}
			if out, err := runTool(t, "prometheus", body, "promtool", "check", "metrics"); err != nil {
				t.Errorf("%s: promtool check metrics: %v\n%s\nscrape:\n%s", m.name, err, out, body)
			}
			role := "patroni_replica"
			if m == primary {
				role = "patroni_primary"
			}
			re := regexp.MustCompile(`(?m)^` + role + `\{[^}]*scope="` + regexp.QuoteMeta(c.scope) + `"[^}]*\} 1$`)
			if !re.Match(body) {
				t.Errorf("%s: /metrics lacks %s{scope=%q} 1:\n%s", m.name, role, c.scope, body)
			}
		}
	})
}

// TestPatronictl: Patroni's own patronictl (Debian package patroni, 3.0.2),
// pointed at the same etcd and scope, sees a normal Patroni cluster.
func TestPatronictl(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{})
	primary := c.waitHealthy(t, formTimeout)

	// patronictl reads the DCS linearizably but a replica's xlog_location
	// is only as fresh as its last cycle: wait for lag 0 everywhere.
	var rows []patronictlRow
	poll.Eventually(t, formTimeout, "patronictl list to show a leader and two streaming replicas without lag", func() error {
		var err error
		rows, err = patronictlList(t, c)
		if err != nil {
			return err
		}
		return checkList(rows, c, primary, 1)
	})

	out, err := patronictl(t, c, "list")
	if err != nil {
		t.Fatalf("patronictl list: %v\n%s", err, out)
	}
	t.Logf("patronictl list:\n%s", out)
	for _, m := range c.m {
		if !strings.Contains(out, "| "+m.name+" ") || !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", m.pgPort)) {
			t.Errorf("patronictl list does not show %s at 127.0.0.1:%d:\n%s", m.name, m.pgPort, out)
		}
	}
	if !strings.Contains(out, c.scope) {
		t.Errorf("patronictl list does not name the cluster %s:\n%s", c.scope, out)
	}

	out, err = patronictl(t, c, "show-config")
	if err != nil {
		t.Fatalf("patronictl show-config: %v\n%s", err, out)
	}
	t.Logf("patronictl show-config:\n%s", out)
	for _, want := range []string{"loop_wait: 2", "ttl: 20", "retry_timeout: 5", "maximum_lag_on_failover: 1048576", "use_pg_rewind: true"} {
		if !slices.Contains(lines(out), want) && !strings.Contains(out, want) {
			t.Errorf("patronictl show-config lacks %q:\n%s", want, out)
		}
	}

	// A new cluster has no failover yet: an empty history table.
	out, err = patronictl(t, c, "history")
	if err != nil {
		t.Fatalf("patronictl history: %v\n%s", err, out)
	}
	t.Logf("patronictl history:\n%s", out)
	if !strings.Contains(out, "TL") || !strings.Contains(out, "LSN") {
		t.Errorf("patronictl history shows no table:\n%s", out)
	}
}

// patronictlRow is one member in `patronictl list -f json`.
type patronictlRow struct {
	Cluster string `json:"Cluster"`
	Member  string `json:"Member"`
	Host    string `json:"Host"`
	Role    string `json:"Role"`
	State   string `json:"State"`
	TL      *int   `json:"TL"`
	// Lag is a number of MB, or "unknown".
	Lag any `json:"Lag in MB"`
}

// patronictl runs Patroni's patronictl with a Patroni configuration for the
// cluster's etcd and scope.
func patronictl(t testing.TB, c *testCluster, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join(c.dir, "patronictl.yml")
	yml := fmt.Sprintf("scope: %s\nnamespace: /service/\netcd3:\n  hosts:\n  - %s\n", c.scope, env.etcd.Endpoint)
	if c.opts.auth {
		// patronictl 3.0.2 sends ctl.auth, else restapi.auth, which Patroni
		// builds from restapi.authentication.
		yml += fmt.Sprintf("restapi:\n  authentication:\n    username: %s\n    password: %s\n", apiUser, apiPassword)
	}
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	return runTool(t, "patroni", nil, "patronictl", append([]string{"-c", path}, args...)...)
}

func patronictlList(t testing.TB, c *testCluster) ([]patronictlRow, error) {
	out, err := patronictl(t, c, "list", "-f", "json")
	if err != nil {
		return nil, fmt.Errorf("patronictl list -f json: %v\n%s", err, out)
	}
	var rows []patronictlRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("patronictl list -f json: %v\n%s", err, out)
	}
	return rows, nil
}

// checkList checks patronictl's view: the leader running, every other
// member a streaming or running replica without lag, all on timeline tl.
func checkList(rows []patronictlRow, c *testCluster, leader *member, tl int) error {
	if len(rows) != len(c.m) {
		return fmt.Errorf("%d members listed, want %d: %+v", len(rows), len(c.m), rows)
	}
	for _, r := range rows {
		if r.Cluster != c.scope {
			return fmt.Errorf("%s: cluster %q, want %q", r.Member, r.Cluster, c.scope)
		}
		m := c.member(r.Member)
		if want := fmt.Sprintf("127.0.0.1:%d", m.pgPort); r.Host != want {
			return fmt.Errorf("%s: host %q, want %q", r.Member, r.Host, want)
		}
		if r.TL == nil || *r.TL != tl {
			return fmt.Errorf("%s: TL %v, want %d", r.Member, r.TL, tl)
		}
		if m == leader {
			if r.Role != "Leader" || r.State != "running" {
				return fmt.Errorf("%s: %s %s, want a running Leader", r.Member, r.Role, r.State)
			}
			continue
		}
		if r.Role != "Replica" || (r.State != "running" && r.State != "streaming") {
			return fmt.Errorf("%s: %s %s, want a running or streaming Replica", r.Member, r.Role, r.State)
		}
		if lag, ok := r.Lag.(float64); !ok || lag != 0 {
			return fmt.Errorf("%s: lag %v MB, want 0", r.Member, r.Lag)
		}
	}
	return nil
}
