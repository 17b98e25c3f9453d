package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PostgresUser is the account PostgreSQL runs as on Debian.
const PostgresUser = "postgres"

// UserCredential is the uid, gid and groups of an account, for
// Options.RunAs.
func UserCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("looking up the %s user: %w (install PostgreSQL: apt-get install postgresql-15)", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("the %s user has a non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

// PostmasterPID is the pid of the live postmaster of a data directory, 0
// when none runs there (a pid from a stale postmaster.pid may since belong
// to anyone, so the process must be a live postgres).
func PostmasterPID(dataDir string) int {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || pid <= 0 || !ProcessAlive(pid) {
		return 0
	}
	if st, err := readStat(pid); err != nil || st.comm != "postgres" {
		return 0
	}
	return pid
}

// stat is what /proc/<pid>/stat says about a process.
type stat struct {
	comm  string
	state byte
	ppid  int
}

func readStat(pid int) (stat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	// The command name is in parentheses and may hold anything; the
	// fields after the last ')' are plain.
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, data)
	}
	fields := strings.Fields(string(data[end+1:]))
	if len(fields) < 2 || len(fields[0]) != 1 {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, data)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return stat{comm: string(data[open+1 : end]), state: fields[0][0], ppid: ppid}, nil
}

// ProcessAlive reports whether pid exists and is not a zombie: a pid
// check alone lies where nobody reaps. A zombie this process adopted (a
// postmaster whose agent was killed, when the caller is a child
// subreaper) is reaped here, or PostgreSQL would refuse its data directory
// ("lock file postmaster.pid already exists").
func ProcessAlive(pid int) bool {
	st, err := readStat(pid)
	if err != nil {
		return false
	}
	if st.state == 'Z' && st.ppid == os.Getpid() {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
	return st.state != 'Z' && st.state != 'X'
}

// Children are the pids of pid's live children.
func Children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil && st.ppid == pid && st.state != 'Z' {
			out = append(out, p)
		}
	}
	return out
}
