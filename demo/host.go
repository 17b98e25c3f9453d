package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

// debianPgBinGlob is where Debian installs each PostgreSQL major's
// programs.
const debianPgBinGlob = "/usr/lib/postgresql/*/bin"

// pgPrograms are the PostgreSQL programs the agent runs.
var pgPrograms = []string{"postgres", "initdb", "pg_ctl", "pg_controldata", "pg_basebackup", "pg_rewind"}

// findPgBinDir returns explicit when it holds every program the agent
// runs, else (explicit empty) the newest major under glob that does.
func findPgBinDir(explicit, glob string) (string, error) {
	if explicit != "" {
		if missing := missingPrograms(explicit); len(missing) > 0 {
			return "", fmt.Errorf("--pg-bin-dir %s: no %s there", explicit, strings.Join(missing, ", "))
		}
		return explicit, nil
	}
	dirs, err := filepath.Glob(glob)
	if err != nil {
		return "", err
	}
	slices.SortFunc(dirs, func(a, b string) int { return compareVersions(pgMajor(b), pgMajor(a)) })
	var incomplete []string
	for _, d := range dirs {
		missing := missingPrograms(d)
		if len(missing) == 0 {
			return d, nil
		}
		incomplete = append(incomplete, fmt.Sprintf("%s lacks %s", d, strings.Join(missing, ", ")))
	}
	msg := "no PostgreSQL server found in " + glob + ": install it (apt-get install postgresql-15) or pass --pg-bin-dir"
	if len(incomplete) > 0 {
		msg += " (" + strings.Join(incomplete, "; ") + ")"
	}
	return "", errors.New(msg)
}

func missingPrograms(dir string) []string {
	var missing []string
	for _, p := range pgPrograms {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	return missing
}

// pgMajor is the version in /usr/lib/postgresql/<version>/bin ("9.6" ->
// [9 6], "15" -> [15]); nil when the directory is named otherwise.
func pgMajor(binDir string) []int {
	var v []int
	for _, part := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil
		}
		v = append(v, n)
	}
	return v
}

func compareVersions(a, b []int) int { return slices.Compare(a, b) }

// osUser is the account the demo runs its agents as.
type osUser struct {
	Name string
	Cred *syscall.Credential
}

func lookupOSUser(name string) (*osUser, error) {
	cred, err := tkcluster.UserCredential(name)
	if err != nil {
		return nil, err
	}
	return &osUser{Name: name, Cred: cred}, nil
}

func chownTo(path string, u *osUser) error {
	if u == nil {
		return nil
	}
	if err := os.Chown(path, int(u.Cred.Uid), int(u.Cred.Gid)); err != nil {
		return fmt.Errorf("handing %s to the %s user: %w", path, u.Name, err)
	}
	return nil
}

// checkPluginDir checks what the plugin host will check in the agents:
// the directory and the plugins the demo needs exist, and neither the
// directory nor the binaries are writable by group or others.
func checkPluginDir(dir string, names ...string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("plugin directory: %w (run make build, or pass --plugin-dir)", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("plugin directory %s is not a directory", dir)
	}
	if err := notWritableByOthers(dir, fi.Mode()); err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("plugin %s: %w (run make build, or pass --plugin-dir)", n, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("plugin %s is not an executable file (mode %s)", p, fi.Mode())
		}
		if err := notWritableByOthers(p, fi.Mode()); err != nil {
			return err
		}
	}
	return nil
}

func notWritableByOthers(path string, mode fs.FileMode) error {
	if mode.Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %s), which the plugin host refuses: chmod go-w %s", path, mode.Perm(), path)
	}
	return nil
}

// checkExecutable checks that path is an executable regular file.
func checkExecutable(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s %s is not an executable file (mode %s)", what, path, fi.Mode())
	}
	return nil
}

// agentEnv is the environment of a demo agent: the caller's, without what
// would change its configuration (CUSTOS_*) or its PostgreSQL connections
// (PG*), with HOME in the member's directory and, when it runs as another
// user, that user's name.
func agentEnv(environ []string, home string, u *osUser) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CUSTOS") || strings.HasPrefix(k, "PG") || k == "HOME" ||
			(u != nil && (k == "USER" || k == "LOGNAME")) {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "HOME="+home)
	if u != nil {
		out = append(out, "USER="+u.Name, "LOGNAME="+u.Name)
	}
	return out
}
