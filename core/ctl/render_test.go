package ctl

import (
	"bytes"
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

func TestListingGolden(t *testing.T) {
	fixtures := []struct {
		name     string
		raw      *dcs.Cluster
		extended bool
	}{
		{"healthy", healthyRaw(), false},
		{"healthy_extended", healthyRaw(), true},
		{"busy", busyRaw(), false},
		{"standby", standbyRaw(), false},
		{"uninitialized", &dcs.Cluster{}, false},
		{"initializing", &dcs.Cluster{Initialize: value("")}, false},
	}
	for _, f := range fixtures {
		for _, format := range []string{formatPretty, formatTSV, formatJSON, formatYAML} {
			t.Run(f.name+"/"+format, func(t *testing.T) {
				var out bytes.Buffer
				if err := newListing("demo", decode(t, f.raw), f.extended).write(&out, format); err != nil {
					t.Fatal(err)
				}
				golden(t, "list_"+f.name+"."+format, out.Bytes())
			})
		}
	}
}

// The things an operator reads off the table, checked apart from the
// goldens so that a careless -update cannot bless them away.
func TestListingContent(t *testing.T) {
	l := newListing("demo", decode(t, busyRaw()), false)
	cell := func(member, column string) any {
		t.Helper()
		ci := -1
		for i, c := range l.columns {
			if c == column {
				ci = i
			}
		}
		if ci < 0 {
			t.Fatalf("no column %q in %v", column, l.columns)
		}
		for _, r := range l.rows {
			if r[1] == member {
				return r[ci]
			}
		}
		t.Fatalf("no member %q", member)
		return nil
	}
	want := []struct {
		member, column string
		value          any
	}{
		{"alpha", colRole, "Leader"},
		{"alpha", colLag, ""},
		{"alpha", colPendingRestart, "*"},
		{"alpha", colHost, "10.0.0.1"},
		{"bravo", colRole, "Sync Standby"},
		{"bravo", colState, "streaming"},
		{"bravo", colLag, int64(2)},      // 1.5 MiB rounds half to even
		{"charlie", colLag, int64(2)},    // 2.5 MiB rounds half to even
		{"charlie", colState, "running"}, // no replication_state published
		{"charlie", colScheduledRestart, "2030-01-01T02:00:00+00:00 if version < 15.6"},
		{"delta", colLag, "unknown"},
		{"delta", colTL, ""},
		{"delta", colState, "creating replica"},
	}
	for _, w := range want {
		if got := cell(w.member, w.column); got != w.value {
			t.Errorf("%s %s = %#v, want %#v", w.member, w.column, got, w.value)
		}
	}
	if len(l.serviceInfo) != 2 || l.serviceInfo[0] != "Maintenance mode: on" ||
		!strings.HasPrefix(l.serviceInfo[1], "Switchover scheduled at: 2030-01-01T01:00:00+00:00") {
		t.Errorf("service info = %q", l.serviceInfo)
	}
	if !strings.HasPrefix(l.title, " Cluster: demo (7268616322854375442) ") {
		t.Errorf("title = %q", l.title)
	}
}

func TestRoleTitle(t *testing.T) {
	for in, want := range map[string]string{
		api.MemberLeader:        "Leader",
		api.MemberReplica:       "Replica",
		api.MemberSyncStandby:   "Sync Standby",
		api.MemberStandbyLeader: "Standby Leader",
		api.MemberQuorumStandby: "Quorum Standby",
	} {
		if got := roleTitle(in); got != want {
			t.Errorf("roleTitle(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLagCell(t *testing.T) {
	for _, c := range []struct {
		lag  *api.Lag
		want any
	}{
		{nil, ""},
		{&api.Lag{}, "unknown"},
		{&api.Lag{Known: true}, int64(0)},
		{&api.Lag{Bytes: mebibyte / 2, Known: true}, int64(0)}, // half to even
		{&api.Lag{Bytes: mebibyte/2 + 1, Known: true}, int64(1)},
		{&api.Lag{Bytes: 3 * mebibyte / 2, Known: true}, int64(2)},
		{&api.Lag{Bytes: 5 * mebibyte / 2, Known: true}, int64(2)},
		{&api.Lag{Bytes: 1 << 40, Known: true}, int64(1 << 20)},
	} {
		if got := lagCell(c.lag); got != c.want {
			t.Errorf("lagCell(%+v) = %#v, want %#v", c.lag, got, c.want)
		}
	}
}

func TestHostColumn(t *testing.T) {
	m := func(host string, port int) api.MemberInfo { return api.MemberInfo{Host: host, Port: port} }
	for _, c := range []struct {
		name    string
		members []api.MemberInfo
		want    bool
	}{
		{"distinct hosts on 5432", []api.MemberInfo{m("a", 5432), m("b", 5432)}, false},
		{"a port other than 5432", []api.MemberInfo{m("a", 5432), m("b", 5433)}, true},
		{"a shared host", []api.MemberInfo{m("a", 5432), m("a", 5432)}, true},
		{"members without host do not count", []api.MemberInfo{m("a", 5432), m("", 0), m("", 0)}, false},
	} {
		if got := showPorts(c.members); got != c.want {
			t.Errorf("%s: showPorts = %v, want %v", c.name, got, c.want)
		}
	}
	if got := hostCell(m("10.0.0.1", 5433), true); got != "10.0.0.1:5433" {
		t.Errorf("hostCell = %q", got)
	}
	if got := hostCell(m("10.0.0.1", 5433), false); got != "10.0.0.1" {
		t.Errorf("hostCell without port = %q", got)
	}
}

func TestTitleOverTheBorder(t *testing.T) {
	if got := withTitle("+------+----+", " Cluster: x "); got != "+ Cluster: x+" {
		t.Errorf("title cut = %q", got)
	}
	if got := withTitle("+------------------+----+", " Cluster: x "); got != "+ Cluster: x ------+----+" {
		t.Errorf("title = %q", got)
	}
}

func TestMultilineCellsRuleEveryRow(t *testing.T) {
	tb := table{columns: []string{"A", "B"}, rows: [][]string{{"x", "1\n2"}, {"y", "3"}}}
	want := strings.Join([]string{
		"+---+---+",
		"| A | B |",
		"+---+---+",
		"| x | 1 |",
		"|   | 2 |",
		"+---+---+",
		"| y | 3 |",
		"+---+---+",
		"",
	}, "\n")
	if got := tb.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestPyJSON(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{"naïve \"q\"\n", `"na\u00efve \"q\"\n"`},
		{"𝄞", `"\ud834\udd1e"`},
		{map[string]any{"b": true, "a": 2.0, "c": []any{"x", nil}}, `{"a": 2, "b": true, "c": ["x", null]}`},
		{int64(-3), `-3`},
		{1.5, `1.5`},
	} {
		if got := pyJSON(c.in); got != c.want {
			t.Errorf("pyJSON(%#v) = %s, want %s", c.in, got, c.want)
		}
	}
}
