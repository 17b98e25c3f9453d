//go:build unix

package replicatest

import (
	"slices"
	"testing"
)

func TestChildArgsDropRootOnlyFiles(t *testing.T) {
	in := []string{"-test.paniconexit0", "-test.timeout=10m0s", "-test.testlogfile=/tmp/go-build1/b001/testlog.txt",
		"-test.run", "TestX", "-test.gocoverdir", "/tmp/cover", "-test.v=true", "--test.coverprofile=c.out"}
	want := []string{"-test.paniconexit0", "-test.timeout=10m0s", "-test.run", "TestX", "-test.v=true"}
	if got := childArgs(in); !slices.Equal(got, want) {
		t.Errorf("childArgs = %q, want %q", got, want)
	}
}
