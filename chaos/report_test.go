package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Two members whose writable spans overlap make one dual-primary window
// of the overlap's length; spans that only follow each other make none, and
// a failed probe ends a span.
func TestOverlaps(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s := &sampler{probes: map[string][]probe{
		// node1 takes writes from 0 to 1000 ms, then fails.
		"node1": {{at(0), at(10), true}, {at(500), at(510), true}, {at(990), at(1000), true}, {at(1500), at(1510), false}},
		// node2 takes writes from 1100 ms on: after node1, no overlap.
		"node2": {{at(0), at(10), false}, {at(1100), at(1110), true}, {at(2000), at(2010), true}},
		// node3 takes one write at 900-950 ms, inside node1's span.
		"node3": {{at(900), at(950), true}, {at(1200), at(1210), false}},
	}}
	got := s.overlaps([]string{"node1", "node2", "node3"})
	if len(got) != 1 {
		t.Fatalf("overlaps %+v, want one", got)
	}
	if o := got[0]; o.a != "node1" || o.b != "node3" || !o.from.Equal(at(900)) || o.length() != 50*time.Millisecond {
		t.Errorf("overlap %+v, want node1 and node3 for 50ms from 900ms", o)
	}
	if spans := s.writable("node1"); len(spans) != 1 || !spans[0].from.Equal(at(0)) || !spans[0].to.Equal(at(1000)) {
		t.Errorf("node1 spans %+v", spans)
	}
	if got := s.outages([]string{"node1", "node2", "node3"}, 50*time.Millisecond); len(got) != 1 || !got[0].from.Equal(at(1000)) || !got[0].to.Equal(at(1100)) {
		t.Errorf("outages of 50ms or more: %+v, want 1000ms to 1100ms", got)
	}
	if got := s.outages([]string{"node1", "node2", "node3"}, time.Second); len(got) != 0 {
		t.Errorf("outages of a second or more: %+v, want none", got)
	}
	if got := s.leaderChanges([]string{"node1", "node2", "node3"}); got != 2 {
		t.Errorf("leader changes %d, want 2 (spans begin: node1, node3, node2)", got)
	}
	if name, ok := s.otherWritableSince("node1", at(1050)); !ok || name != "node2" {
		t.Errorf("otherWritableSince = %q, %v; want node2", name, ok)
	}
	if name, ok := s.otherWritableSince("node2", at(1050)); ok {
		t.Errorf("otherWritableSince = %q: node1 and node3 took no write after 1050ms", name)
	}
}

func TestSummaryRow(t *testing.T) {
	sum := summary{sc: scenario{name: "kill-node"}, runs: []result{
		{acked: 100, converged: true, converge: 3 * time.Second, gap: time.Second},
		{acked: 50, lost: 2, converged: true, converge: time.Second, gap: 4 * time.Second,
			overlaps: []overlap{{span: span{time.Unix(0, 0), time.Unix(1, 0)}, a: "node1", b: "node2"}}},
		{acked: 10, err: errors.New("no convergence")},
		{acked: 40, converged: true, converge: 7 * time.Second},
	}}
	r := sum.row()
	if r.runs != 4 || r.failed != 1 || r.acked != 200 || r.lost != 2 || r.windows != 1 || r.windowTotal != time.Second || r.converged != 3 {
		t.Errorf("row %+v", r)
	}
	if r.convMedian != 3*time.Second || r.convMax != 7*time.Second || r.gap != 4*time.Second {
		t.Errorf("convergence median %v max %v, gap %v; want 3s, 7s, 4s", r.convMedian, r.convMax, r.gap)
	}
	var out strings.Builder
	writeTable(&out, []summary{sum})
	for _, want := range []string{"kill-node", "1 (1s)", "3/4", "3.0s", "7.0s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the table:\n%s", want, out.String())
		}
	}
}

func TestPickScenarios(t *testing.T) {
	short, err := pickScenarios("", true)
	if err != nil || len(short) == 0 {
		t.Fatalf("short form: %v %v", short, err)
	}
	for _, s := range short {
		if !s.short {
			t.Errorf("%s is not in the short form", s.name)
		}
	}
	two, err := pickScenarios("kill-node, sigstop-agent", false)
	if err != nil || len(two) != 2 || two[1].name != "sigstop-agent" {
		t.Errorf("picked %v, %v", two, err)
	}
	if _, err := pickScenarios("no-such", false); err == nil {
		t.Error("an unknown scenario was accepted")
	}
	seen := map[string]bool{}
	for _, s := range scenarios {
		if seen[s.name] || s.about == "" || s.fault == nil {
			t.Errorf("scenario %q: duplicate, or without about or fault", s.name)
		}
		seen[s.name] = true
	}
}
