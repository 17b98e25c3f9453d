package agent

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// mainEnv makes the test binary run Main on its arguments, as the custos
// binary does, so tests can run the command as a process.
const mainEnv = "CUSTOS_AGENT_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestValidateConfigListsEveryProblem(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--validate-config", "testdata/three-mistakes.toml"}, &stdout, &stderr)
	if code == exitOK {
		t.Fatalf("exit code 0 for an invalid file; stderr:\n%s", stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{
		"three-mistakes.toml:7: restapi.bogus_key: unknown key",
		"postgresql.data_dir: missing required value",
		"three-mistakes.toml:15: postgresql.pg_ctl_timeout: bad duration",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("a password leaked into the output:\n%s", out)
	}
}

func TestUsageAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main(nil, &stdout, &stderr); code != exitUsage {
		t.Errorf("no arguments: exit %d, want %d", code, exitUsage)
	}
	stdout.Reset()
	if code := Main([]string{"--version"}, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "custos "+Version) {
		t.Errorf("--version: exit %d, output %q", code, stdout.String())
	}
}
