package postgres

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	cases := map[string]func(*Config){
		"no scope":            func(c *Config) { c.Scope = "" },
		"no name":             func(c *Config) { c.Name = "" },
		"no data dir":         func(c *Config) { c.DataDir = "" },
		"root data dir":       func(c *Config) { c.DataDir = "/" },
		"listen without port": func(c *Config) { c.Listen = "127.0.0.1" },
		"listen bad port":     func(c *Config) { c.Listen = "127.0.0.1:0" },
		"listen no host":      func(c *Config) { c.Listen = ":5432" },
		"connect bad":         func(c *Config) { c.ConnectAddress = "nohostport" },
		"connect bad port":    func(c *Config) { c.ConnectAddress = "h:99999" },
		"wildcard no connect": func(c *Config) { c.ConnectAddress = ""; c.Listen = "*:5432" },
		"no replication user": func(c *Config) { c.Replication.Username = "" },
		"bad ssl option":      func(c *Config) { c.Replication.SSL = map[string]string{"password": "x"} },
		"bad bin name":        func(c *Config) { c.BinName = map[string]string{"psql": "x"} },
		"bad initdb option":   func(c *Config) { c.InitdbOptions = []string{"--nosync"} },
	}
	for name, mutate := range cases {
		cfg := baseConfig()
		mutate(&cfg)
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}

	cfg := baseConfig()
	cfg.ConnectAddress = ""
	cfg.Superuser.Username = ""
	cfg.DataDir = "relative/data"
	cfg.Pgpass = ""
	p := mustNew(t, cfg)
	got := p.Config()
	if got.ConnectAddress != "127.0.0.1:5432" || got.Superuser.Username != "postgres" || got.PgCtlTimeout != DefaultPgCtlTimeout {
		t.Errorf("defaults: %q %q %v", got.ConnectAddress, got.Superuser.Username, got.PgCtlTimeout)
	}
	if !filepath.IsAbs(got.DataDir) || !filepath.IsAbs(got.Pgpass) || got.LogDir != filepath.Join(got.DataDir, "log") {
		t.Errorf("paths: %q %q %q", got.DataDir, got.Pgpass, got.LogDir)
	}
	if p.timeoutOr(0) != DefaultPgCtlTimeout || p.timeoutOr(time.Second) != time.Second {
		t.Error("timeoutOr")
	}
	if p.bin(BinPgCtl) != "/usr/lib/postgresql/15/bin/pg_ctl" {
		t.Errorf("bin = %q", p.bin(BinPgCtl))
	}
	cfg.BinName = map[string]string{BinPgCtl: "pg_ctl15", BinPostgres: "/opt/pg/postgres"}
	p = mustNew(t, cfg)
	if p.bin(BinPgCtl) != "/usr/lib/postgresql/15/bin/pg_ctl15" || p.bin(BinPostgres) != "/opt/pg/postgres" {
		t.Errorf("bin overrides: %q %q", p.bin(BinPgCtl), p.bin(BinPostgres))
	}
}

func TestInitdbOptions(t *testing.T) {
	for _, ok := range []string{"--data-checksums", "--encoding=UTF8", "--locale=C.UTF-8", "--auth=md5"} {
		if err := ValidateInitdbOptions([]string{ok}); err != nil {
			t.Errorf("%s rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"--pgdata=/x", "--nosync", "--no-sync", "--pwfile=/x", "--sync-only", "--version", "-k", "data-checksums", "--", "--username=x"} {
		if err := ValidateInitdbOptions([]string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	cfg := baseConfig()
	cfg.InitdbOptions = []string{"--data-checksums"}
	got := strings.Join(initdbArgs(cfg, "/tmp/pw"), " ")
	want := "--pgdata=/var/lib/postgresql/15/main --username=postgres --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 --data-checksums"
	if got != want {
		t.Errorf("initdb args:\n%s\nwant\n%s", got, want)
	}
	cfg.InitdbOptions = []string{"--auth-host=md5"}
	if got := strings.Join(initdbArgs(cfg, ""), " "); strings.Contains(got, "scram") || !strings.Contains(got, "--auth-local=trust") || strings.Contains(got, "pwfile") {
		t.Errorf("initdb args with --auth-host: %s", got)
	}
	cfg.InitdbOptions = []string{"--auth=peer"}
	if got := strings.Join(initdbArgs(cfg, ""), " "); strings.Contains(got, "--auth-local") || strings.Contains(got, "--auth-host") {
		t.Errorf("initdb args with --auth: %s", got)
	}
}

func TestCredentialsRedact(t *testing.T) {
	c := Credentials{Username: "u", Password: "hunter2", SSL: map[string]string{"sslpassword": "keypw", "sslmode": "require"}}
	cfg := baseConfig()
	cfg.Superuser = c
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "keypw") {
			t.Errorf("password in %q", s)
		}
	}
	if !strings.Contains(c.String(), "sslmode=require") {
		t.Errorf("String = %q", c.String())
	}
}

func TestDataDirStateAndChecks(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "data")
	if st, err := dirState(dir); st != DirAbsent || err != nil {
		t.Errorf("absent: %v %v", st, err)
	}
	if err := checkDataDir(dir, true); err != nil {
		t.Errorf("absent dir check: %v", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ".hidden"), nil, 0o600)
	os.Mkdir(filepath.Join(dir, "lost+found"), 0o700)
	if st, _ := dirState(dir); st != DirEmpty {
		t.Errorf("empty: %v", st)
	}
	os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600)
	if st, _ := dirState(dir); st != DirUnrecognized {
		t.Errorf("no pg_control: %v", st)
	}
	os.Mkdir(filepath.Join(dir, "global"), 0o700)
	os.WriteFile(filepath.Join(dir, "global", "pg_control"), nil, 0o600)
	if st, _ := dirState(dir); st != DirInitialized {
		t.Errorf("initialized: %v", st)
	}
	if err := checkDataDir(dir, true); err != nil {
		t.Errorf("0700 own dir: %v", err)
	}
	os.Chmod(dir, 0o755)
	err := checkDataDir(dir, true)
	var de *DataDirError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "0700 or 0750") || !strings.Contains(err.Error(), dir) {
		t.Errorf("0755: %v", err)
	}
	os.Chmod(dir, 0o750)
	if err := checkDataDir(dir, true); err != nil {
		t.Errorf("0750: %v", err)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if st, err := dirState(file); st != DirNotDirectory || err == nil {
		t.Errorf("file: %v %v", st, err)
	}
	if err := checkDataDir(file, true); err == nil {
		t.Error("checkDataDir accepted a file")
	}

	p := mustNew(t, Config{Scope: "s", Name: "n", DataDir: dir, Listen: "127.0.0.1:5432", Replication: Credentials{Username: "r"}, Pgpass: filepath.Join(base, "pgpass")})
	if major, err := p.MajorVersion(); err != nil || major != 15 {
		t.Errorf("MajorVersion = %d, %v", major, err)
	}
	for in, want := range map[string]int{"15": 15, "9.6": 9, "16beta1": 0} {
		if got, _ := parseMajor(in); got != want {
			t.Errorf("parseMajor(%q) = %d", in, got)
		}
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte("old 1\nold 2\n"), 0o600)
	fi, _ := os.Stat(path)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	for i := 0; i < 30; i++ {
		fmt.Fprintf(f, "line %d\n", i)
	}
	f.Close()
	got := tailFile(path, fi.Size(), 3)
	if strings.Join(got, "|") != "line 27|line 28|line 29" {
		t.Errorf("tail = %q", got)
	}
	if got := tailFile(path, fi.Size()+10000, 2); len(got) != 2 {
		t.Errorf("tail past the end (file replaced) = %q", got)
	}
	if got := tailFile(filepath.Join(t.TempDir(), "none"), 0, 2); got != nil {
		t.Errorf("tail of a missing file = %q", got)
	}
}
