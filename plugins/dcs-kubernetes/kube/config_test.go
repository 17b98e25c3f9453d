package kube

import (
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
)

func TestParseConfigDefaults(t *testing.T) {
	for _, in := range []string{``, `null`, `{}`} {
		c, err := ParseConfig([]byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		want := &Config{
			ScopeLabel: "cluster-name", RoleLabel: "role", LeaderLabelValue: "primary",
			FollowerLabelValue: "replica", StandbyLeaderLabelValue: "primary", Ports: []Port{{Port: 5432}},
		}
		if !reflect.DeepEqual(c, want) {
			t.Fatalf("%q: got %+v, want %+v", in, c, want)
		}
	}
}

func TestParseConfigAllKeys(t *testing.T) {
	c, err := ParseConfig([]byte(`{
		"namespace": "db",
		"labels": {"application": "spilo", "team": "acid"},
		"scope_label": "cluster",
		"role_label": "spilo-role",
		"leader_label_value": "master",
		"follower_label_value": "standby",
		"standby_leader_label_value": "standby-leader",
		"tmp_role_label": "old-role",
		"bootstrap_labels": {"bootstrapping": "true"},
		"use_endpoints": true,
		"pod_ip": "10.1.2.3",
		"ports": [{"name": "postgresql", "port": 5433}, {"name": "patroni", "port": "8008", "protocol": "TCP"}],
		"cacert": "/etc/ca.crt",
		"bypass_api_service": "true",
		"retriable_http_codes": "401, 429",
		"kubeconfig": "/root/.kube/config",
		"context": "kind-kind",
		"member_store": "configmap"
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Namespace: "db", Labels: map[string]string{"application": "spilo", "team": "acid"}, ScopeLabel: "cluster",
		RoleLabel: "spilo-role", LeaderLabelValue: "master", FollowerLabelValue: "standby",
		StandbyLeaderLabelValue: "standby-leader", TmpRoleLabel: "old-role",
		BootstrapLabels: map[string]string{"bootstrapping": "true"}, UseEndpoints: true, PodIP: "10.1.2.3",
		Ports:  []Port{{Name: "postgresql", Port: 5433}, {Name: "patroni", Port: 8008, Protocol: "TCP"}},
		CACert: "/etc/ca.crt", BypassAPIService: true, RetriableHTTPCodes: []int{401, 429},
		Kubeconfig: "/root/.kube/config", Context: "kind-kind", MemberStore: MemberStoreConfigMap,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if got := c.objectLabels("pg"); !reflect.DeepEqual(got, map[string]string{"application": "spilo", "team": "acid", "cluster": "pg"}) {
		t.Fatalf("object labels %v", got)
	}
	if got := selectorOf(c.objectLabels("pg")); got != "application=spilo,cluster=pg,team=acid" {
		t.Fatalf("selector %q", got)
	}
	if !c.retriable(500) || !c.retriable(429) || c.retriable(404) {
		t.Fatal("retriable codes are the defaults plus the configured ones")
	}
}

func TestParseConfigRetriableCodeForms(t *testing.T) {
	for in, want := range map[string][]int{
		`{"retriable_http_codes": 401}`:        {401},
		`{"retriable_http_codes": [401, 403]}`: {401, 403},
		`{"retriable_http_codes": "401,403"}`:  {401, 403},
	} {
		c, err := ParseConfig([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !reflect.DeepEqual(c.RetriableHTTPCodes, want) {
			t.Fatalf("%s: got %v", in, c.RetriableHTTPCodes)
		}
	}
}

// TestParseConfigErrors checks that every mistake is reported with its key
// path, all at once.
func TestParseConfigErrors(t *testing.T) {
	_, err := ParseConfig([]byte(`{
		"namespace": "Not_A_Namespace",
		"labels": {"bad label": "x", "ok": "bad value!", "cluster-name": "x"},
		"scope_label": "",
		"role_label": "role",
		"leader_label_value": "",
		"tmp_role_label": "role",
		"bootstrap_labels": {"ok": "1"},
		"use_endpoints": "maybe",
		"pod_ip": "10.1.2",
		"ports": [{"port": 70000}, {"name": "x", "protocol": "ICMP", "extra": 1}],
		"retriable_http_codes": [99, "abc"],
		"member_store": "etcd",
		"kubeconfig": 1,
		"no_such_key": 1
	}`))
	var cerr *sdk.ConfigError
	if !errors.As(err, &cerr) {
		t.Fatalf("want *sdk.ConfigError, got %v", err)
	}
	var paths []string
	for _, p := range cerr.Problems {
		paths = append(paths, p.Path)
	}
	sort.Strings(paths)
	want := []string{
		"bootstrap_labels.ok",
		"kubeconfig",
		"labels.bad label",
		"labels.ok",
		"leader_label_value",
		"member_store",
		"namespace",
		"no_such_key",
		"pod_ip",
		"ports[0].name",
		"ports[0].port",
		"ports[1].extra",
		"ports[1].protocol",
		"retriable_http_codes[0]",
		"retriable_http_codes[1]",
		"scope_label",
		"tmp_role_label",
		"use_endpoints",
	}
	if !reflect.DeepEqual(dedupe(paths), want) {
		t.Fatalf("problems at\n%s\nwant\n%s\n(%v)", strings.Join(dedupe(paths), "\n"), strings.Join(want, "\n"), err)
	}
}

func dedupe(in []string) []string {
	var out []string
	for i, s := range in {
		if i == 0 || in[i-1] != s {
			out = append(out, s)
		}
	}
	return out
}

func TestParseConfigNotATable(t *testing.T) {
	for _, in := range []string{`[1]`, `"x"`, `{`} {
		if _, err := ParseConfig([]byte(in)); err == nil {
			t.Fatalf("%s accepted", in)
		}
	}
}

func TestCheckNames(t *testing.T) {
	if err := checkNames(layout{scope: "pg"}, "pg-0", MemberStorePod); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ scope, member string }{
		{"PG", "a"}, {"pg", "node_1"}, {"", "a"}, {"pg", ""}, {strings.Repeat("x", 64), "a"},
	} {
		if err := checkNames(layout{scope: tc.scope}, tc.member, MemberStoreConfigMap); err == nil {
			t.Errorf("scope %q member %q accepted", tc.scope, tc.member)
		}
	}
}
