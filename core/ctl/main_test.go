package ctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// cleanups run after every test of the package (shared builds).
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	// Every plugin process and its goroutines must be gone once a command
	// returns.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runCtl runs a command line and returns its exit code, stdout and
// stderr. The environment holds only what vars says.
func runCtl(ctx context.Context, vars map[string]string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &env{stdout: &stdout, stderr: &stderr, lookupEnv: envOf(vars), executable: exe})
	return code, stdout.String(), stderr.String()
}

func TestExitCodes(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"lst"}, exitUsage, `unknown command "lst"`},
		{[]string{"list", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"list", "-f", "xml"}, exitUsage, `unknown format "xml"`},
		{[]string{"list", "-w", "-1"}, exitUsage, "positive number of seconds"},
		{[]string{"list"}, exitFailure, "no DCS to read"},
		{[]string{"-d", "raft://x", "list", "demo"}, exitFailure, `unknown scheme "raft"`},
		{[]string{"-d", "etcd3://127.0.0.1:2379", "list"}, exitUsage, "no cluster name"},
	} {
		code, _, stderr := runCtl(ctx, nil, c.args...)
		if code != c.code || !strings.Contains(stderr, c.inStderr) {
			t.Errorf("custosctl %s: exit %d, stderr %q; want exit %d with %q", strings.Join(c.args, " "), code, stderr, c.code, c.inStderr)
		}
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := runCtl(context.Background(), nil, "--help")
	if code != exitOK || !strings.Contains(stdout, "list") || !strings.Contains(stdout, "--dcs-url") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
	// The demo is custos-demo now; custosctl does not pretend to have it.
	code, _, stderr := runCtl(context.Background(), nil, "demo")
	if code != exitUsage || !strings.Contains(stderr, `unknown command "demo"`) {
		t.Errorf("demo: exit %d\n%s", code, stderr)
	}
}
