package cluster

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestConfigTablesAndReplacedKeys(t *testing.T) {
	c := &Config{}
	c.Set("postgresql", "listen", "127.0.0.1:5432")
	c.Set("", "scope", "demo")
	c.Set("postgresql", "max_connections", 30)
	c.Line("postgresql", "max_connections = 50")
	c.Set("bootstrap.dcs", "pause", true)
	c.Set("postgresql", "pg_hba", []string{"local all all trust", `host "x"`})
	c.Table("tags")
	c.Comment("generated for %s", "node1")
	c.Raw("[postgresql.recovery_conf]", `restore_command = "false"`)
	want := `# generated for node1
scope = "demo"

[postgresql]
listen = "127.0.0.1:5432"
max_connections = 50
pg_hba = ["local all all trust", "host \"x\""]

[bootstrap.dcs]
pause = true

[tags]

[postgresql.recovery_conf]
restore_command = "false"
`
	if got := string(c.Bytes()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if !c.Has("postgresql", "max_connections") || c.Has("postgresql", "max") || c.Has("tags", "x") {
		t.Error("Has answers wrong")
	}
}

func TestTOMLString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:         `"plain"`,
		`a"b\c`:         `"a\"b\\c"`,
		"line\nbreak":   `"line\u000Abreak"`,
		"tab\there\x7f": `"tab\u0009here\u007F"`,
	} {
		if got := TOMLString(in); got != want {
			t.Errorf("TOMLString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestFreePortsAreDistinctAndFree(t *testing.T) {
	first, err := FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	second, err := FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(first, second...) {
		if seen[p] || p <= 0 {
			t.Fatalf("ports %v then %v repeat or are invalid", first, second)
		}
		seen[p] = true
		l, err := net.Listen("tcp", Loopback(p))
		if err != nil {
			t.Fatalf("port %d is not free after picking: %v", p, err)
		}
		l.Close()
	}
}

func TestNewWritesEveryMember(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Options{
		Scope: "s", Members: 2, Dir: dir, Custos: "/bin/custos", PluginDir: "/p", PgBinDir: "/pg",
		DCS:       DCS{Name: "etcd3", Lines: []string{`hosts = ["127.0.0.1:1"]`}},
		Timings:   Timings{TTL: 10, LoopWait: 1, RetryTimeout: 4},
		Superuser: Role{"postgres", "a"}, Replication: Role{"replicator", "b"},
		Edit: func(m *Member, c *Config) { c.Set("tags", "member", m.Name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Members) != 2 || c.Member("node2") != c.Members[1] || c.Member("node3") != nil {
		t.Fatalf("members %+v", c.Members)
	}
	for _, m := range c.Members {
		data, err := os.ReadFile(m.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`name = "` + m.Name + `"`, "[dcs.etcd3]\nhosts = [\"127.0.0.1:1\"]", "ttl = 10\nloop_wait = 1\nretry_timeout = 4",
			`listen = "127.0.0.1:` + strconv.Itoa(m.PGPort) + `"`, `data_dir = "` + filepath.Join(dir, m.Name, "data") + `"`,
			"[tags]\nmember = \"" + m.Name + "\"",
		} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s: no %q in\n%s", m.Name, want, data)
			}
		}
		if strings.Contains(string(data), "authentication.rewind") || strings.Contains(string(data), "restapi.authentication") {
			t.Errorf("%s: roles nobody asked for:\n%s", m.Name, data)
		}
	}
	if _, err := New(Options{Scope: "s", Dir: dir}); err == nil {
		t.Error("options without binaries or DCS accepted")
	}
}

func TestPostmasterPIDIgnoresStaleFiles(t *testing.T) {
	dir := t.TempDir()
	if got := PostmasterPID(dir); got != 0 {
		t.Errorf("no pid file: %d", got)
	}
	// Our own pid: alive, but not a postgres process.
	pidFile := filepath.Join(dir, "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(strings.Join([]string{strconv.Itoa(os.Getpid()), dir, ""}, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := PostmasterPID(dir); got != 0 {
		t.Errorf("a pid that is not postgres: %d", got)
	}
	if err := os.WriteFile(pidFile, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := PostmasterPID(dir); got != 0 {
		t.Errorf("garbage: %d", got)
	}
	if !ProcessAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := TailFile(path, 2); got != "c\nd\n" {
		t.Errorf("tail = %q", got)
	}
	if got := TailFile(path, 10); got != "a\nb\nc\nd\n" {
		t.Errorf("tail = %q", got)
	}
	if got := TailFile(filepath.Join(t.TempDir(), "none"), 2); !strings.Contains(got, "no such file") {
		t.Errorf("missing file: %q", got)
	}
}
