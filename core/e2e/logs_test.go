//go:build integration

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What the agents log: HA cycles, crash dumps, failure dumps.

// logSize is the current length of the member's log: an offset for
// logSince.
func (m *member) logSize() int64 {
	fi, err := os.Stat(m.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the lines of the member's log after offset.
func (m *member) logSince(offset int64) []string {
	data, err := os.ReadFile(m.logPath)
	if err != nil || int64(len(data)) < offset {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data[offset:]), "\n"), "\n")
}

// cycle is one logged HA cycle.
type cycle struct {
	// at is when the cycle ended (the line's timestamp).
	at      time.Time
	line    string
	reason  string
	trigger string
	actions []string
	err     string
}

var cycleLine = regexp.MustCompile(`ha cycle: (.*)$`)

// hclogTime is the timestamp layout of hclog's plain lines.
const hclogTime = "2006-01-02T15:04:05.000Z0700"

// timerSlack is how close to the leader key's disappearance a cycle woken
// by the loop_wait timer may end and still count as the reaction to it:
// the timer fired in the few milliseconds the watch event was on its way.
// A loop that ignores the watch reacts up to loop_wait later.
const timerSlack = 250 * time.Millisecond

// assertWatchWon checks the cycle in which m took the leader key (after
// offset in its log): it acquired the key, and the DCS watch woke it when
// the key went away at gone, rather than the next loop_wait. A cycle that
// gathered the peers' answers for the race follows the one that asked for
// them at once: the trigger of that one counts.
func assertWatchWon(t testing.TB, m *member, offset int64, gone time.Time) cycle {
	t.Helper()
	cycles := m.cyclesSince(offset)
	for i, cy := range cycles {
		if !cy.has("acquire_leader") || cy.err != "" {
			continue
		}
		woke := cy
		for j := i - 1; woke.trigger == "gathered" && j >= 0; j-- {
			woke = cycles[j]
		}
		switch {
		case woke.trigger == "dcs_watch":
		case woke.trigger == "loop_wait" && !gone.IsZero() && woke.at.Sub(gone) < timerSlack:
			t.Logf("%s: the loop_wait timer fired just as the leader key went away (cycle ended %v after): accepted", m.name, woke.at.Sub(gone))
		default:
			t.Errorf("%s: the cycle that took the leader key was woken by %q, not the DCS watch (the key went away at %s):\n%s\n%s",
				m.name, woke.trigger, gone.Format("15:04:05.000"), woke.line, cy.line)
		}
		return cy
	}
	t.Errorf("%s: no logged cycle acquired the leader key:\n%s", m.name, strings.Join(m.logSince(offset), "\n"))
	return cycle{}
}

// cyclesSince parses the HA cycle lines the member logged after offset.
func (m *member) cyclesSince(offset int64) []cycle {
	var out []cycle
	for _, l := range m.logSince(offset) {
		sub := cycleLine.FindStringSubmatch(l)
		if sub == nil {
			continue
		}
		kv := parseKV(sub[1])
		c := cycle{line: l, reason: kv["reason"], trigger: kv["trigger"], err: kv["error"]}
		if ts, _, ok := strings.Cut(l, " "); ok {
			c.at, _ = time.Parse(hclogTime, ts)
		}
		if a := kv["actions"]; a != "" {
			c.actions = splitActions(a)
		}
		out = append(out, c)
	}
	return out
}

// has reports whether the cycle ran an action whose name starts with kind.
func (c cycle) has(kind string) bool {
	for _, a := range c.actions {
		if a == kind || strings.HasPrefix(a, kind+"(") {
			return true
		}
	}
	return false
}

// splitActions splits "a,b(x,y),c" at the top-level commas.
func splitActions(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// parseKV parses hclog's `key=value key="quoted value"` pairs.
func parseKV(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				val, s = s, ""
			} else {
				val, _ = strconv.Unquote(q)
				s = s[len(q):]
			}
		} else {
			sp := strings.IndexByte(s, ' ')
			if sp < 0 {
				sp = len(s)
			}
			val, s = s[:sp], s[sp:]
		}
		out[key] = val
	}
	return out
}

// crashDump matches what a Go panic or fatal error prints.
var crashDump = regexp.MustCompile(`(?m)^(panic: |fatal error: |goroutine \d+ \[)`)

// assertNoCrash fails when the member's log holds a Go crash dump.
func (m *member) assertNoCrash(t testing.TB) {
	t.Helper()
	data, _ := os.ReadFile(m.logPath)
	if loc := crashDump.FindIndex(data); loc != nil {
		t.Errorf("%s: crash dump in the agent's log:\n%s", m.name, tail(string(data[loc[0]:]), 40))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dump prints what a failed test needs: the DCS content, each member's
// state and the tails of its logs.
func (c *testCluster) dump() {
	t := c.t
	var b strings.Builder
	fmt.Fprintf(&b, "==== cluster %s (%s)\n", c.scope, c.dir)
	if kvs, err := c.dcs(); err != nil {
		fmt.Fprintf(&b, "DCS: %v\n", err)
	} else {
		for _, k := range kvs.keys() {
			kv := kvs.kv[k]
			fmt.Fprintf(&b, "DCS %s (lease %x, mod %d) = %s\n", k, kv.Lease, kv.ModRevision, kv.Value)
			if len(kv.Meta) > 0 {
				fmt.Fprintf(&b, "    %v\n", kv.Meta)
			}
		}
	}
	for _, m := range c.m {
		fmt.Fprintf(&b, "==== %s: agent running %v, postmaster %d, api 127.0.0.1:%d, pg 127.0.0.1:%d\n", m.name, m.running(), m.postmasterPID(), m.apiPort, m.pgPort)
		if st, err := m.status(); err == nil {
			fmt.Fprintf(&b, "/patroni: %s\n", st.raw)
		}
		data, _ := os.ReadFile(m.logPath)
		fmt.Fprintf(&b, "---- %s custos log (tail)\n%s\n", m.name, tail(string(data), 120))
		if pg, err := os.ReadFile(filepath.Join(m.dataDir, "log", "postmaster.log")); err == nil {
			fmt.Fprintf(&b, "---- %s postmaster.log (tail)\n%s\n", m.name, tail(string(pg), 30))
		}
	}
	t.Log(b.String())
}
