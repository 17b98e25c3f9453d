package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DirState is what the data directory holds.
type DirState int

// Data directory states.
const (
	// DirAbsent: the path does not exist.
	DirAbsent DirState = iota
	// DirEmpty: a directory holding nothing but dot files and lost+found.
	DirEmpty
	// DirInitialized: PG_VERSION and global/pg_control are present.
	DirInitialized
	// DirUnrecognized: a non-empty directory that is not a data directory
	// (a half-finished clone, say).
	DirUnrecognized
	// DirNotDirectory: the path is a file or something else.
	DirNotDirectory
	// DirInaccessible: the path cannot be read (permissions).
	DirInaccessible
)

func (s DirState) String() string {
	switch s {
	case DirAbsent:
		return "absent"
	case DirEmpty:
		return "empty"
	case DirInitialized:
		return "initialized"
	case DirUnrecognized:
		return "unrecognized"
	case DirNotDirectory:
		return "not a directory"
	case DirInaccessible:
		return "inaccessible"
	}
	return "DirState(" + strconv.Itoa(int(s)) + ")"
}

// DataDirState looks at the data directory. The error explains
// DirInaccessible and DirNotDirectory.
func (p *Postgres) DataDirState() (DirState, error) { return dirState(p.c().cfg.DataDir) }

func dirState(dir string) (DirState, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return DirAbsent, nil
	case err != nil:
		return DirInaccessible, fmt.Errorf("data directory %s: %w", dir, err)
	case !fi.IsDir():
		return DirNotDirectory, fmt.Errorf("data directory %s is not a directory (%s)", dir, fi.Mode().Type())
	}
	// The usual case, checked every cycle, without listing the directory.
	if fileExists(filepath.Join(dir, "PG_VERSION")) && fileExists(filepath.Join(dir, "global", "pg_control")) {
		return DirInitialized, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return DirInaccessible, fmt.Errorf("reading data directory %s: %w", dir, err)
	}
	empty := true
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") && e.Name() != "lost+found" {
			empty = false
			break
		}
	}
	if empty {
		return DirEmpty, nil
	}
	return DirUnrecognized, nil
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// DataDirError is a data directory PostgreSQL would refuse: owned by
// another user or with permissions other than 0700/0750.
type DataDirError struct {
	Path    string
	Problem string
	// Owner and Current are "name (uid N)" of the directory's owner and of
	// the user the agent runs as.
	Owner   string
	Current string
	Mode    fs.FileMode
}

func (e *DataDirError) Error() string {
	return fmt.Sprintf("data directory %s: %s (owner %s, mode %04o; the agent runs as %s)",
		e.Path, e.Problem, e.Owner, e.Mode.Perm(), e.Current)
}

// CheckDataDir checks that an existing data directory is a directory owned
// by the current user with mode 0700 or 0750, as PostgreSQL requires. An
// absent directory passes (initdb or a clone creates it).
func (p *Postgres) CheckDataDir() error { return checkDataDir(p.c().cfg.DataDir, true) }

// checkDataDir checks ownership and, with perms, the mode (initdb fixes
// the mode of an empty directory itself).
func checkDataDir(dir string, perms bool) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking data directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data directory %s is not a directory (%s)", dir, fi.Mode().Type())
	}
	uid, ok := fileOwner(fi)
	if !ok {
		return nil // no owner information on this platform
	}
	e := &DataDirError{Path: dir, Owner: describeUID(uid), Current: describeUID(os.Getuid()), Mode: fi.Mode()}
	if uid != os.Getuid() {
		e.Problem = "owned by another user; PostgreSQL runs only as the owner of its data directory"
		return e
	}
	if perm := fi.Mode().Perm(); perms && perm != 0o700 && perm != 0o750 {
		e.Problem = "permissions must be 0700 or 0750"
		return e
	}
	return nil
}

func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// MajorVersion reads PG_VERSION from the data directory (15, 16...).
func (p *Postgres) MajorVersion() (int, error) {
	data, err := os.ReadFile(filepath.Join(p.c().cfg.DataDir, "PG_VERSION"))
	if err != nil {
		return 0, fmt.Errorf("reading PG_VERSION: %w", err)
	}
	return parseMajor(strings.TrimSpace(string(data)))
}

// parseMajor turns "15" or "9.6" into 15 or 9.
func parseMajor(v string) (int, error) {
	head, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(head)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("parsing PostgreSQL version %q", v)
	}
	return n, nil
}

// RemoveDataDir removes the data directory so that it can be cloned anew.
// With moveAside it is renamed to <data_dir>.<timestamp> instead and the
// new path is returned. It refuses while a postmaster runs on it and
// refuses a directory that is neither a data directory nor empty nor a
// half-finished one (it never touches anything but the configured
// data_dir).
func (p *Postgres) RemoveDataDir(ctx context.Context, moveAside bool) (string, error) {
	dir := p.c().cfg.DataDir
	if dir == "" || dir == "/" || !filepath.IsAbs(dir) {
		return "", fmt.Errorf("removing data directory %q: refusing an unsafe path", dir)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if p.IsRunning() {
		return "", fmt.Errorf("removing data directory %s: PostgreSQL is running", dir)
	}
	if pid, alive := p.postmasterFromPidFile(); alive {
		return "", fmt.Errorf("removing data directory %s: a postmaster (pid %d) is running on it", dir, pid)
	}
	state, err := dirState(dir)
	switch state {
	case DirAbsent:
		return "", nil
	case DirNotDirectory, DirInaccessible:
		return "", fmt.Errorf("removing data directory: %w", err)
	case DirUnrecognized:
		// A failed clone leaves partial contents; still only a directory
		// that looks like one of ours is removed.
		if !looksLikePartialDataDir(dir) {
			return "", fmt.Errorf("removing data directory %s: it does not look like a PostgreSQL data directory; refusing", dir)
		}
	}
	p.closeConn()
	if moveAside {
		target := fmt.Sprintf("%s.%s", dir, time.Now().UTC().Format("2006-01-02-15-04-05"))
		if err := os.Rename(dir, target); err != nil {
			return "", fmt.Errorf("moving data directory %s aside: %w", dir, err)
		}
		p.logger.Info("moved the data directory aside", "path", target)
		return target, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("removing data directory %s: %w", dir, err)
	}
	p.logger.Info("removed the data directory", "path", dir)
	return "", nil
}

// looksLikePartialDataDir accepts a directory holding at least one of the
// files or folders every data directory (or a clone in progress) has.
func looksLikePartialDataDir(dir string) bool {
	for _, name := range []string{"PG_VERSION", "global", "base", "pg_wal", "backup_label", "postgresql.conf", "pg_hba.conf"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}
