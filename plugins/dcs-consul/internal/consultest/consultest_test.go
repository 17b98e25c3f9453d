package consultest

import (
	"os"
	"strings"
	"testing"
)

// TestVersionMatchesWrapper keeps Version in step with the Consul release
// tools/consul builds: .ci/build-consul names the binary after go.mod.
func TestVersionMatchesWrapper(t *testing.T) {
	data, err := os.ReadFile("../../../../tools/consul/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/hashicorp/consul" && strings.HasPrefix(f[1], "v") {
			if f[1] != "v"+Version {
				t.Fatalf("tools/consul requires consul %s, the tests look for %s", f[1], Version)
			}
			return
		}
	}
	t.Fatal("tools/consul/go.mod requires no github.com/hashicorp/consul")
}
