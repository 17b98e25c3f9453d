//go:build integration

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

var (
	releaseBuild    sync.Once
	releaseRoot     string
	releaseBin      string
	releaseBuildErr error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if releaseRoot != "" {
		_ = os.RemoveAll(releaseRoot)
	}
	os.Exit(code)
}

// release builds custos, custosctl and the plugins the demo needs once,
// laid out as `make build` lays them out, in a directory private to the
// test's user: as root, the demo then sees a checkout the postgres user
// cannot reach, and must run copies. The directory is removed by
// TestMain.
func release(t *testing.T) (bin string) {
	t.Helper()
	releaseBuild.Do(func() {
		root, err := os.MkdirTemp("", "custos-demo-release-")
		if err != nil {
			releaseBuildErr = err
			return
		}
		releaseRoot = root
		releaseBin = filepath.Join(root, "bin")
		releaseBuildErr = tkcluster.Build(releaseBin, map[string]string{
			"custos":                            tkcluster.Custos,
			"custosctl":                         tkcluster.Custosctl,
			tkcluster.PluginBinary("dcs-etcd3"): tkcluster.Plugin("dcs-etcd3"),
			tkcluster.PluginBinary("replica-basebackup"): tkcluster.Plugin("replica-basebackup"),
		})
	})
	if releaseBuildErr != nil {
		t.Fatal(releaseBuildErr)
	}
	return releaseBin
}

// syncBuffer collects output written from several goroutines and tells
// when a marker shows up.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	seen   chan struct{}
	once   sync.Once
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if strings.Contains(b.buf.String(), b.marker) {
		b.once.Do(func() { close(b.seen) })
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// processesIn lists the command lines of running processes that mention
// dir.
func processesIn(dir string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir)) {
			found = append(found, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

// The demo as a user runs it: three agents (as the postgres user when the
// tests run as root) with real PostgreSQL form a healthy cluster, the
// printed `custosctl -c ... list` works, and Ctrl-C leaves no process and
// no directory behind.
func TestDemoEndToEnd(t *testing.T) {
	t.Parallel() // mostly waits for PostgreSQL
	bin := release(t)
	out := &syncBuffer{marker: "Press Ctrl-C to stop the demo", seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--timeout", "3m"},
			&env{stdout: out, stderr: out, lookupEnv: func(string) (string, bool) { return "", false }, executable: filepath.Join(bin, "custos-demo")})
	}()
	select {
	case <-out.seen:
	case code := <-done:
		t.Fatalf("the demo ended with exit %d before the cluster was healthy:\n%s", code, out)
	case <-time.After(4 * time.Minute):
		cancel()
		<-done
		t.Fatalf("no healthy cluster after 4 minutes:\n%s", out)
	}
	text := out.String()
	dir := regexp.MustCompile(`in (/\S+custos-demo-\d+)\n`).FindStringSubmatch(text)
	if dir == nil {
		t.Fatalf("no demo directory in the output:\n%s", text)
	}
	if os.Geteuid() == 0 && !strings.Contains(text, "the agents run copies from "+dir[1]+"/bin") {
		t.Errorf("the build directory is private to root, yet the demo ran the binaries in place:\n%s", text)
	}
	if strings.Count(text, "| Leader  | running   |") != 1 || strings.Count(text, "| Replica | streaming |") != 2 {
		t.Errorf("the table does not show one leader and two streaming replicas:\n%s", text)
	}

	// The printed list command works as printed.
	listLine := regexp.MustCompile(`\S+custosctl -c (\S+) list`).FindStringSubmatch(text)
	if listLine == nil {
		t.Fatalf("no list command in the output:\n%s", text)
	}
	list, err := exec.Command(filepath.Join(bin, "custosctl"), "-c", listLine[1], "list", "-f", "tsv").CombinedOutput()
	if err != nil || strings.Count(string(list), "\tReplica\t") != 2 || strings.Count(string(list), "\tLeader\t") != 1 {
		t.Errorf("custosctl -c %s list: %v\n%s", listLine[1], err, list)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("the demo exited with %d:\n%s", code, out)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the demo did not stop within 2 minutes:\n%s", out)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", dir[1], err)
	}
	if left := processesIn(dir[1]); len(left) > 0 {
		t.Errorf("processes left behind:\n%s", strings.Join(left, "\n"))
	}
}
