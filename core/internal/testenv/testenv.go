// Package testenv helps tests that run real PostgreSQL servers. PostgreSQL
// refuses to run as root, and tests here run as root: Main re-executes the
// whole test binary as the `postgres` OS user, so every test (and every
// server it starts) runs as that user, and t.TempDir() lands in a
// directory that user owns.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) {
//		code, ranHere := testenv.Main(m, true)
//		// ranHere: the tests ran in this process (check goroutine leaks)
//		os.Exit(code)
//	}
//
// Outside that, PostgresBinDir finds the server binaries and FreePort picks
// a free TCP port; ForeignDir gives a directory owned by another user. The
// DCS servers the tests run come from the testkit module
// (github.com/custos-ha/custos/testkit/servers).
package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Environment variables set for the re-executed binary.
const (
	envReexec     = "CUSTOS_TESTENV_REEXEC"
	envForeignDir = "CUSTOS_TESTENV_FOREIGN_DIR"
	// EnvPgBinDir overrides where PostgresBinDir looks.
	EnvPgBinDir = "CUSTOS_PG_BIN_DIR"
)

// PostgresUser is the OS user PostgreSQL runs as in tests.
const PostgresUser = "postgres"

// Main runs the tests. When asPostgres is set and the process runs as root,
// it copies the test binary to a directory owned by the postgres user,
// runs it there as that user with the same arguments (TMPDIR and HOME
// pointing into that directory) and returns its exit code without running
// the tests itself (ranHere false). Otherwise it runs them (ranHere true).
func Main(m *testing.M, asPostgres bool) (code int, ranHere bool) {
	if !asPostgres || os.Getuid() != 0 || os.Getenv(envReexec) != "" {
		return m.Run(), true
	}
	code, err := reexec()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: running the tests as the %s user: %v\n", PostgresUser, err)
		return 1, false
	}
	return code, false
}

func reexec() (int, error) {
	u, err := user.Lookup(PostgresUser)
	if err != nil {
		return 0, fmt.Errorf("%w (install PostgreSQL: apt-get install postgresql-15)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}

	root, err := os.MkdirTemp("", "custos-testenv-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(root)
	tmp := filepath.Join(root, "tmp")
	foreign := filepath.Join(root, "foreign")
	for _, d := range []string{tmp, foreign} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return 0, err
		}
	}
	// root and tmp belong to postgres; foreign stays root's.
	for _, d := range []string{root, tmp} {
		if err := os.Chown(d, uid, gid); err != nil {
			return 0, err
		}
	}
	bin := filepath.Join(root, filepath.Base(os.Args[0]))
	if err := copyFile(os.Args[0], bin); err != nil {
		return 0, fmt.Errorf("copying the test binary: %w", err)
	}
	if err := os.Chown(bin, uid, gid); err != nil {
		return 0, err
	}

	// go test's -test.testlogfile points into a directory only root may
	// write; the child cannot create it, and test caching then simply does
	// not apply.
	var args []string
	for _, a := range os.Args[1:] {
		if !strings.HasPrefix(a, "-test.testlogfile") {
			args = append(args, a)
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
		envReexec+"=1",
		envForeignDir+"="+foreign,
		"TMPDIR="+tmp,
		"HOME="+root,
		"USER="+PostgresUser,
		"LOGNAME="+PostgresUser,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups},
	}
	// The tests die with this process (go test's timeout kills it).
	dieWithParent(cmd.SysProcAttr)
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// PostgresBinDir returns the directory of the PostgreSQL server binaries:
// $CUSTOS_PG_BIN_DIR, else the newest /usr/lib/postgresql/<major>/bin. A
// missing installation fails the test with what to install.
func PostgresBinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EnvPgBinDir); d != "" {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err != nil {
			t.Fatalf("%s=%s: %v", EnvPgBinDir, d, err)
		}
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool {
		return majorOf(matches[i]) < majorOf(matches[j])
	})
	if len(matches) == 0 {
		t.Fatalf("no PostgreSQL server found in /usr/lib/postgresql/*/bin: install it (apt-get install postgresql-15) or set %s", EnvPgBinDir)
	}
	return filepath.Dir(matches[len(matches)-1])
}

func majorOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("picking a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ForeignDir returns an existing directory owned by a user other than the
// current one: the one Main prepared when it re-executed the tests, else
// the root directory when it belongs to someone else.
func ForeignDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(envForeignDir); d != "" {
		return d
	}
	if os.Getuid() != 0 {
		return "/"
	}
	t.Fatalf("no directory owned by another user: run the tests through testenv.Main")
	return ""
}
