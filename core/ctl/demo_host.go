package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// pickPorts returns n distinct loopback ports that were free a moment ago
// (all n listeners stay open until it returns, so they differ).
func pickPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// osUser is the account the demo runs its agents as.
type osUser struct {
	Name     string
	UID, GID uint32
	Groups   []uint32
}

// postgresOSUser is the account PostgreSQL runs as on Debian.
const postgresOSUser = "postgres"

func lookupOSUser(name string) (*osUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("looking up the %s user: %w (install PostgreSQL: apt-get install postgresql-15)", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("the %s user has a non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	out := &osUser{Name: name, UID: uint32(uid), GID: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				out.Groups = append(out.Groups, uint32(n))
			}
		}
	}
	return out, nil
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
