//go:build unix

package replicatest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// PostgresUser is the OS user PostgreSQL runs as.
const PostgresUser = "postgres"

// RunAsPostgres is for the TestMain of packages whose tests run
// PostgreSQL, which refuses to run as root. Run as any other user it
// returns m.Run(). Run as root it runs a copy of the test binary as the
// postgres OS user, with the same arguments and environment, and returns
// that run's exit code; m is not run in the root process. Prepare what
// needs root (building binaries into a directory postgres can read) before
// calling it, and hand paths to the child in environment variables.
func RunAsPostgres(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	code, err := rerunAs(PostgresUser)
	if err != nil {
		fmt.Fprintf(os.Stderr, "running the tests as %s: %v\n", PostgresUser, err)
		return 1
	}
	return code
}

func rerunAs(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("looking up user %s (install postgresql-15: apt-get install postgresql-15): %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("uid of %s: %w", name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("gid of %s: %w", name, err)
	}
	// go test builds the binary in a directory only root may enter.
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding the test binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "custos-test-as-"+name+"-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, err
	}
	copyPath := filepath.Join(dir, filepath.Base(exe))
	if err := copyExecutable(exe, copyPath); err != nil {
		return 0, err
	}

	cmd := exec.Command(copyPath, childArgs(os.Args[1:])...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "HOME="+u.HomeDir, "USER="+name, "LOGNAME="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	setParentDeathSignal(cmd.SysProcAttr)
	err = cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("running %s as %s: %w", copyPath, name, err)
	}
	return 0, nil
}

// childArgs drops the flags that name files only root may write (go
// test's test log, coverage output).
func childArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "test.testlogfile", "test.gocoverdir", "test.coverprofile":
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

func copyExecutable(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return fmt.Errorf("copying %s: %w", from, err)
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Chmod(to, 0o755)
}
