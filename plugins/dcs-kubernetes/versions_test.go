package main

import (
	"os"
	"strings"
	"testing"

	"github.com/custos-ha/custos/testkit/servers"
)

// TestClientMatchesAPIServer checks that the plugin's client-go and API
// types are the release of the kube-apiserver its tests run.
func TestClientMatchesAPIServer(t *testing.T) {
	data, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	staging := "v0" + strings.TrimPrefix(servers.KubeVersion, "1")
	want := map[string]bool{"k8s.io/client-go": true, "k8s.io/api": true, "k8s.io/apimachinery": true}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		delete(want, f[0])
		if f[1] != staging {
			t.Errorf("the plugin requires %s %s, the API server is %s (%s)", f[0], f[1], servers.KubeVersion, staging)
		}
	}
	for m := range want {
		t.Errorf("the plugin's go.mod requires no %s", m)
	}
}
