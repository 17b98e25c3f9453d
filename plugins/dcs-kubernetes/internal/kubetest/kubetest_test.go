package kubetest

import (
	"os"
	"strings"
	"testing"
)

// requirements returns module -> version of the require and replace lines
// of a go.mod (replace targets keyed by the replaced module).
func requirements(t *testing.T, path string) (require, replace map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	require, replace = map[string]string{}, map[string]string{}
	block := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "//"):
		case f[0] == ")":
			block = ""
		case len(f) == 2 && f[1] == "(":
			block = f[0]
		case f[0] == "require" && len(f) >= 3:
			require[f[1]] = f[2]
		case block == "require" && len(f) >= 2:
			require[f[0]] = f[1]
		case block == "replace" && len(f) == 4 && f[1] == "=>":
			replace[f[0]] = f[3]
		}
	}
	return require, replace
}

// TestVersionsAgree checks that the servers the tests look for are the ones
// .ci/build-kube builds from tools/, that every Kubernetes staging module is
// pinned to the matching release, and that the plugin's client-go matches
// the API server.
func TestVersionsAgree(t *testing.T) {
	req, rep := requirements(t, "../../../../tools/kube-apiserver/go.mod")
	if got := req["k8s.io/kubernetes"]; got != "v"+KubeVersion {
		t.Errorf("tools/kube-apiserver requires k8s.io/kubernetes %s, the tests look for %s", got, KubeVersion)
	}
	staging := "v0" + strings.TrimPrefix(KubeVersion, "1")
	if len(rep) < 20 {
		t.Errorf("tools/kube-apiserver replaces %d staging modules; kubernetes has about 30", len(rep))
	}
	for m, v := range rep {
		if !strings.HasPrefix(m, "k8s.io/") || v != staging {
			t.Errorf("tools/kube-apiserver replaces %s with %s, want %s", m, v, staging)
		}
	}
	req, _ = requirements(t, "../../../../tools/etcd/go.mod")
	if got := req["go.etcd.io/etcd/server/v3"]; got != "v"+EtcdVersion {
		t.Errorf("tools/etcd requires etcd %s, the tests look for %s", got, EtcdVersion)
	}
	req, _ = requirements(t, "../../go.mod")
	for _, m := range []string{"k8s.io/client-go", "k8s.io/api", "k8s.io/apimachinery"} {
		if got := req[m]; got != staging {
			t.Errorf("the plugin requires %s %s, the API server is %s (%s)", m, got, KubeVersion, staging)
		}
	}
}
