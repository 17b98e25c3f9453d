package testenv

import (
	"os"
	"strings"
	"testing"
)

// TestServerVersions keeps the versions the launchers look for in step with
// the wrapper modules .ci/build-consul and .ci/build-kube build, which name
// the binaries after their go.mod requirements.
func TestServerVersions(t *testing.T) {
	for _, c := range []struct{ gomod, module, want string }{
		{"../../../tools/consul/go.mod", "github.com/hashicorp/consul", ConsulVersion},
		{"../../../tools/kube-apiserver/go.mod", "k8s.io/kubernetes", KubeVersion},
		{"../../../tools/etcd/go.mod", "go.etcd.io/etcd/server/v3", Etcd36Version},
	} {
		data, err := os.ReadFile(c.gomod)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
			if len(f) >= 2 && f[0] == c.module {
				got = strings.TrimPrefix(f[1], "v")
				break
			}
		}
		if got != c.want {
			t.Errorf("%s requires %s %q; the launchers look for %s", c.gomod, c.module, got, c.want)
		}
	}
}
