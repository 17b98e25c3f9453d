package ctl

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDCSURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want DCSURL
	}{
		{"etcd3://127.0.0.1:2379", DCSURL{Plugin: "etcd3", Hosts: []string{"127.0.0.1:2379"}}},
		{"consul://10.0.0.9", DCSURL{Plugin: "consul", Hosts: []string{"10.0.0.9:8500"}}},
		{"etcd3://10.0.0.1:2379,10.0.0.2:2380/custom", DCSURL{Plugin: "etcd3", Hosts: []string{"10.0.0.1:2379", "10.0.0.2:2380"}, Namespace: "/custom"}},
		{"etcd://db1,db2/", DCSURL{Plugin: "etcd3", Hosts: []string{"db1:2379", "db2:2379"}}},
		{"ETCD3://[::1]:2379/a/b/", DCSURL{Plugin: "etcd3", Hosts: []string{"[::1]:2379"}, Namespace: "/a/b"}},
		{"etcd3://[::1]", DCSURL{Plugin: "etcd3", Hosts: []string{"[::1]:2379"}}},
		{"zookeeper://zk1:2181,zk2/service", DCSURL{Plugin: "zookeeper", Hosts: []string{"zk1:2181", "zk2:2181"}, Namespace: "/service"}},
		{"etcd3://user:secret@127.0.0.1:2379", DCSURL{Plugin: "etcd3", Hosts: []string{"127.0.0.1:2379"}, Username: "user", Password: "secret"}},
		// No scheme: the port decides, as in patronictl.
		{"127.0.0.1:2181", DCSURL{Plugin: "zookeeper", Hosts: []string{"127.0.0.1:2181"}}},
		{"localhost", DCSURL{Plugin: "etcd3", Hosts: []string{"localhost:2379"}}},
	} {
		got, err := ParseDCSURL(c.in)
		if err != nil {
			t.Errorf("ParseDCSURL(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseDCSURL(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestParseDCSURLErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "empty DCS URL",
		"raft://127.0.0.1:8500":   `unknown scheme "raft"`,
		"etcd3://":                "names no host",
		"etcd3://h:0":             `invalid port "0"`,
		"etcd3://h:70000":         `invalid port "70000"`,
		"etcd3://h:x":             `invalid port "x"`,
		"etcd3://:2379":           "empty host name",
		"etcd3://h:2379?x=1":      "query strings",
		"zookeeper://u:p@zk:2181": "only supported for etcd3",
		"etcd3://fe80::1":         `host "fe80::1"`,
	} {
		_, err := ParseDCSURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDCSURL(%q) = %v, want an error with %q", in, err, want)
		}
	}
}

func TestDCSURLSection(t *testing.T) {
	u, err := ParseDCSURL("etcd3://a:1,b:2")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(u.SectionJSON()); got != `{"hosts":["a:1","b:2"]}` {
		t.Errorf("section = %s", got)
	}
	u, err = ParseDCSURL("etcd3://me:pw@a:1")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(u.SectionJSON()); got != `{"hosts":["a:1"],"password":"pw","username":"me"}` {
		t.Errorf("section = %s", got)
	}
}
