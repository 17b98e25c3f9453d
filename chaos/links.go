package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/servers"
)

// The links between members: every member advertises proxies as its
// PostgreSQL and REST API connect addresses, so that replication, pg_rewind,
// base backups and the agents' calls to each other go through them. A
// proxy labels each connection with the member it comes from, so that one
// link (replica -> primary) can be cut while the others flow.

// peerLinks are the proxies in front of one member's PostgreSQL and REST
// API.
type peerLinks struct {
	pg, api *servers.Proxy
}

// startPeerLinks starts the proxies in front of a member's ports.
func (c *cluster) startPeerLinks(pgAddr, apiAddr string) (*peerLinks, error) {
	pg, err := servers.StartProxyLabeled("127.0.0.1:0", pgAddr, c.sourceOf)
	if err != nil {
		return nil, err
	}
	api, err := servers.StartProxyLabeled("127.0.0.1:0", apiAddr, c.sourceOf)
	if err != nil {
		pg.Close()
		return nil, err
	}
	return &peerLinks{pg: pg, api: api}, nil
}

// cut stalls the links between a and b in both directions: what a's
// processes send to b's PostgreSQL and API, and the other way round.
func (c *cluster) cut(a, b string) {
	c.peers[b].pg.StallFrom(a)
	c.peers[b].api.StallFrom(a)
	c.peers[a].pg.StallFrom(b)
	c.peers[a].api.StallFrom(b)
}

// mend undoes cut.
func (c *cluster) mend(a, b string) {
	c.peers[b].pg.ResumeFrom(a)
	c.peers[b].api.ResumeFrom(a)
	c.peers[a].pg.ResumeFrom(b)
	c.peers[a].api.ResumeFrom(b)
}

// sourceOf names the member whose process opened conn, a connection a peer
// proxy accepted: the client's socket is found in /proc/net/tcp by its
// port, then the process that holds it, then the member that process
// belongs to (a descendant of its agent or of its postmaster). "" when
// not found: such connections are never cut.
func (c *cluster) sourceOf(conn net.Conn) string {
	remote, ok1 := conn.RemoteAddr().(*net.TCPAddr)
	local, ok2 := conn.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return ""
	}
	inode := socketInode(remote.Port, local.Port)
	if inode == "" {
		return ""
	}
	pid := socketOwner(inode)
	if pid == 0 {
		return ""
	}
	roots := map[int]string{}
	for _, m := range c.h.Members {
		if m.Running() {
			roots[m.PID()] = m.Name
		}
		if pm := m.PostmasterPID(); pm != 0 {
			roots[pm] = m.Name
		}
	}
	for p := pid; p > 1; p = parentOf(p) {
		if name, ok := roots[p]; ok {
			return name
		}
	}
	return ""
}

// socketInode is the inode of the TCP socket from localPort to peerPort on
// loopback (IPv4), "" when there is none.
func socketInode(localPort, peerPort int) string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", localPort)
	wantPeer := fmt.Sprintf(":%04X", peerPort)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || !strings.HasSuffix(fs[1], want) || !strings.HasSuffix(fs[2], wantPeer) {
			continue
		}
		return fs[9]
	}
	return ""
}

// socketOwner is the pid of a process (of custos or PostgreSQL) holding
// the socket, 0 when none.
func socketOwner(inode string) int {
	link := "socket:[" + inode + "]"
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		if !strings.HasPrefix(name, "postgres") && !strings.HasPrefix(name, "custos") && !strings.HasPrefix(name, "pg_") {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); err == nil && target == link {
				return pid
			}
		}
	}
	return 0
}

// parentOf is the parent of pid, 0 when it is gone.
func parentOf(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold anything; the state
	// and the parent follow the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	fs := strings.Fields(string(data[i+1:]))
	if len(fs) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fs[1])
	return ppid
}

// pluginPID is the pid of the agent's plugin process named
// custos-plugin-<name>, 0 when none runs.
func pluginPID(agent int, name string) int {
	for _, pid := range tkcluster.Children(agent) {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			continue
		}
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if filepath.Base(argv0) == "custos-plugin-"+name {
			return pid
		}
	}
	return 0
}
