package replica

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSourceDSN(t *testing.T) {
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Host: "10.0.0.1", Port: 5432, DBName: "postgres", User: "replicator"}, "host=10.0.0.1 port=5432 dbname=postgres user=replicator"},
		{Source{Host: "h", User: "it's me"}, `host=h user='it\'s me'`},
		{Source{Host: "h", Port: 1, ConnString: "service=x"}, "service=x"},
		{Source{}, ""},
	} {
		if got := tc.src.DSN(); got != tc.want {
			t.Errorf("DSN(%+v) = %q, want %q", tc.src, got, tc.want)
		}
	}
}

func TestSourceCheck(t *testing.T) {
	for _, tc := range []struct {
		conn string
		ok   bool
	}{
		{"host=h port=5432 user=replicator dbname=postgres sslmode=prefer", true},
		{"host=h password=secret", false},
		{"host=h password = 'se cret'", false},
		{`host=h application_name='password=x'`, true},
		{`host=h application_name=a\ password=x`, true},
		{"postgresql://replicator@h:5432/postgres?sslmode=require", true},
		{"postgresql://replicator:secret@h:5432/postgres", false},
		{"postgres://h1:5432,h2:5433/postgres?user=r&password=secret", false},
		{"postgres://h1:5432,h2:5433/postgres?user=r", true},
		{"host=h 'unterminated", false},
		{"host='unterminated", false},
		{"", false},
	} {
		err := Source{ConnString: tc.conn}.Check()
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.conn, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Check(%q) = %v, want ErrInvalidRequest", tc.conn, err)
		}
	}
	if err := (Source{Host: "h", Port: 5432, User: "u"}).Check(); err != nil {
		t.Errorf("Check of parts: %v", err)
	}
}

func TestMethods(t *testing.T) {
	got := Methods(map[string]string{CapMethods: " basebackup, pgbackrest ,,"})
	if !slices.Equal(got, []string{"basebackup", "pgbackrest"}) {
		t.Errorf("Methods = %q", got)
	}
	if got := Methods(nil); len(got) != 0 {
		t.Errorf("Methods(nil) = %q", got)
	}
}

func TestClaimAbsentDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d, err := ClaimDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Existed() || d.Path() != dir {
		t.Fatalf("claim %+v", d)
	}
	mustWrite(t, filepath.Join(dir, "base", "1", "x"))
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reset left the directory: %v", err)
	}
}

func TestClaimEmptyDirAndLinks(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	wal := filepath.Join(root, "wal")
	tblspc := filepath.Join(root, "ts")
	for _, d := range []string{dir, wal, tblspc} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	d, err := ClaimDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Existed() {
		t.Fatal("an existing empty directory claimed as absent")
	}
	// What a copy with --waldir and a tablespace mapping leaves.
	mustWrite(t, filepath.Join(dir, "PG_VERSION"))
	mustWrite(t, filepath.Join(wal, "000000010000000000000001"))
	mustWrite(t, filepath.Join(tblspc, "PG_15_202209061", "5", "16384"))
	if err := os.Symlink(wal, filepath.Join(dir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "pg_tblspc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tblspc, filepath.Join(dir, "pg_tblspc", "16385")); err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, wal, tblspc} {
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Fatalf("%s should still exist: %v", p, err)
		}
		if len(entries) != 0 {
			t.Errorf("%s not emptied: %d entries", p, len(entries))
		}
	}
}

func TestClaimNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, ".hidden"))
	if _, err := ClaimDataDir(dir); !errors.Is(err, ErrDataDirNotEmpty) {
		t.Errorf("claim of a directory with a hidden file = %v, want ErrDataDirNotEmpty", err)
	}
	file := filepath.Join(dir, ".hidden")
	if _, err := ClaimDataDir(file); !errors.Is(err, ErrDataDirNotEmpty) {
		t.Errorf("claim of a file = %v, want ErrDataDirNotEmpty", err)
	}
	if _, err := ClaimDataDir(""); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("claim of no path = %v, want ErrInvalidRequest", err)
	}
}

func TestEmpty(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		path string
		want bool
	}{{filepath.Join(dir, "absent"), true}, {dir, true}} {
		if got, err := Empty(tc.path); err != nil || got != tc.want {
			t.Errorf("Empty(%s) = %v, %v", tc.path, got, err)
		}
	}
	mustWrite(t, filepath.Join(dir, "f"))
	if got, err := Empty(dir); err != nil || got {
		t.Errorf("Empty of a non-empty directory = %v, %v", got, err)
	}
}

func mustWrite(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}
