package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what the bench reads from /proc/<pid>/stat.
type procStat struct {
	pid   int
	comm  string
	state byte
	ppid  int
	// cpu is utime + stime.
	cpu time.Duration
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, data)
}

// parseStat reads "pid (comm) state ppid ... utime stime ...": comm may hold
// spaces and parentheses, so the fields start after the last ')'.
func parseStat(pid int, data []byte) (procStat, error) {
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[closing+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseInt(f[11], 10, 64)
	stime, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: bad numbers", pid)
	}
	return procStat{
		pid: pid, comm: string(data[open+1 : closing]), state: f[0][0], ppid: ppid,
		cpu: time.Duration(utime+stime) * time.Second / clockTicks,
	}, nil
}

// rssBytes is the resident set size of a process (VmRSS).
func rssBytes(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// anonBytes is the anonymous part of a process's resident set: its own
// memory (heap, stacks), without the pages of its executable and libraries
// that it shares with the page cache.
func anonBytes(pid int) (int64, error) { return statusBytes(pid, "RssAnon") }

// statusBytes reads a "<field>: N kB" line of /proc/<pid>/status.
func statusBytes(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing %s of %d: %w", field, pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s for %d (a zombie?)", field, pid)
}

// children lists the children of every thread of pid.
func children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	seen := map[int]bool{}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(s); err == nil && !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// descendants is pid and every process below it.
func descendants(pid int) []int {
	out := []int{pid}
	for _, c := range children(pid) {
		out = append(out, descendants(c)...)
	}
	return out
}

// agentProcesses is the agent and its descendants except PostgreSQL's
// processes (and whatever they started): the agent's own footprint, plugins
// included.
func agentProcesses(pid int) []int {
	out := []int{pid}
	for _, c := range children(pid) {
		st, err := readStat(c)
		if err != nil || st.comm == "postgres" || st.state == 'Z' {
			continue
		}
		out = append(out, agentProcesses(c)...)
	}
	return out
}

// alive reports whether pid exists and is not a zombie, reaping a zombie
// this process adopted (see tkcluster.ProcessAlive).
func alive(pid int) bool { return tkcluster.ProcessAlive(pid) }

// killNow SIGKILLs the processes and waits until they are gone.
func killNow(pids []int, timeout time.Duration) error {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(timeout)
	for _, p := range pids {
		for alive(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d still alive %v after SIGKILL", p, timeout)
			}
			time.Sleep(2 * time.Millisecond) // a killed process is gone within milliseconds
		}
	}
	return nil
}
