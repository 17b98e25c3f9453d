//go:build integration

package ctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

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
		done <- run(ctx, []string{"demo", "--timeout", "3m"},
			&env{stdout: out, stderr: out, lookupEnv: envOf(nil), executable: filepath.Join(bin, "custosctl")})
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
	code, stdout, stderr := runCtl(context.Background(), nil, "-c", listLine[1], "list", "-f", "tsv")
	if code != exitOK || strings.Count(stdout, "\tReplica\t") != 2 || strings.Count(stdout, "\tLeader\t") != 1 {
		t.Errorf("custosctl -c %s list: exit %d\n%s%s", listLine[1], code, stdout, stderr)
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
