package ctl

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/cluster"
)

// pyYAML against PyYAML 6's safe_dump(default_flow_style=False,
// allow_unicode=True, width=200), the output patronictl prints; the
// expected text was produced by PyYAML itself.
func TestPyYAMLMatchesPyYAML(t *testing.T) {
	in := map[string]any{
		"a": map[string]any{
			"b": []any{
				int64(1), "on", "x y", "2024-05-01T10:00:00+00:00", "1:30", "0755", "", " x", "a: b", "#c", "é",
				1.0, 1e20, 0.5, nil, true, "-x", "- x", "a#b", "a #b", "ab:", "@x", "~", "a,b", "[x", "x]", "?x",
				"10.5", "1e3", ".5", "null", "Yes", "y", "=", "<<", "0b1", "1_0", "x\ty",
			},
			"pg_hba": []any{"host all all 0.0.0.0/0 md5"},
			"e":      map[string]any{},
			"l":      []any{},
			"m":      []any{map[string]any{"x": int64(1), "y": []any{int64(1), int64(2)}}, []any{int64(3), int64(4)}},
		},
		"on": int64(1),
	}
	want := `a:
  b:
  - 1
  - 'on'
  - x y
  - '2024-05-01T10:00:00+00:00'
  - '1:30'
  - '0755'
  - ''
  - ' x'
  - 'a: b'
  - '#c'
  - é
  - 1.0
  - 1.0e+20
  - 0.5
  - null
  - true
  - -x
  - '- x'
  - a#b
  - 'a #b'
  - 'ab:'
  - '@x'
  - '~'
  - a,b
  - '[x'
  - x]
  - ?x
  - '10.5'
  - 1e3
  - '.5'
  - 'null'
  - 'Yes'
  - y
  - '='
  - '<<'
  - '0b1'
  - '1_0'
  - "x\ty"
  e: {}
  l: []
  m:
  - x: 1
    y:
    - 1
    - 2
  - - 3
    - 4
  pg_hba:
  - host all all 0.0.0.0/0 md5
'on': 1
`
	if got := pyYAML(in); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	for _, c := range []struct {
		v    any
		want string
	}{
		{map[string]any{}, "{}\n"},
		{[]any{}, "[]\n"},
		{1e-5, "1.0e-05\n...\n"},
		{123.25, "123.25\n...\n"},
	} {
		if got := pyYAML(c.v); got != c.want {
			t.Errorf("pyYAML(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// pyYAMLFlow against PyYAML 6's safe_dump(default_flow_style=True,
// allow_unicode=True, width=200), the Tags cells of list -f tsv and
// topology; the expected text was produced by PyYAML itself.
func TestPyYAMLFlowMatchesPyYAML(t *testing.T) {
	in := map[string]any{
		"nofailover": true, "failover_priority": 0, "n": int64(1), "f": 1.5, "on": "on",
		"x": "a:b", "y": "a,b", "q": "?x", "br": "x]", "sp": "a b", "h": "a#b", "u": "é", "t": "x\ty", "dash": "-x", "e2": "",
		"nest": map[string]any{"l": []any{int64(1), "two", nil}, "e": map[string]any{}, "el": []any{}},
	}
	want := `{br: 'x]', dash: -x, e2: '', f: 1.5, failover_priority: 0, h: a#b, n: 1, nest: {e: {}, el: [], l: [1, two, null]}, nofailover: true, 'on': 'on', q: '?x', sp: a b, t: "x\ty", u: é, x: 'a:b', y: 'a,b'}` + "\n"
	if got := pyYAMLFlow(in); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	for _, c := range []struct {
		v    any
		want string
	}{
		{map[string]any{}, "{}\n"},
		{[]any{int64(1), "two", nil}, "[1, two, null]\n"},
		{"x", "x\n...\n"},
	} {
		if got := pyYAMLFlow(c.v); got != c.want {
			t.Errorf("pyYAMLFlow(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// Tags cells are patronictl's: block YAML in the pretty table, flow YAML
// in tsv, a mapping under list -f yaml, integral numbers of custom tags
// written as integers (as Python reads them from the member's JSON).
func TestTagsCells(t *testing.T) {
	prio := 2
	tags := cluster.Tags{NoFailover: true, FailoverPriority: &prio, Custom: map[string]any{"zone": "on", "rack": float64(3), "weight": 0.5}}
	v := tagsValue(tags)
	if got, want := cellString(v, false), "failover_priority: 2\nnofailover: true\nrack: 3\nweight: 0.5\nzone: 'on'"; got != want {
		t.Errorf("pretty cell = %q, want %q", got, want)
	}
	if got, want := cellString(v, true), "{failover_priority: 2, nofailover: true, rack: 3, weight: 0.5, zone: 'on'}"; got != want {
		t.Errorf("tsv cell = %q, want %q", got, want)
	}
	var b strings.Builder
	l := listing{columns: []string{colMember, colTags}, rows: [][]any{{"node1", v}}}
	if err := l.writeYAML(&b); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "- Member: node1\n  Tags:\n    failover_priority: 2\n    nofailover: true\n    rack: 3\n    weight: 0.5\n    zone: 'on'\n\n"; got != want {
		t.Errorf("yaml = %q, want %q", got, want)
	}
}

// What pyYAML writes reads back as the same value, YAML 1.1 booleans
// included.
func TestYAMLRoundTrip(t *testing.T) {
	in := map[string]any{
		"s": []any{"on", "off", "yes", "No", "1:30", "0755", "", " x", "#c", "a\nb", "x\ty", "null", "é"},
		"n": []any{int64(-3), 1.5, 1e20, true, false, nil},
		"m": map[string]any{"k": map[string]any{"x": []any{map[string]any{"y": int64(1)}}}},
	}
	got, err := decodeYAMLValue([]byte(pyYAML(in)))
	if err != nil {
		t.Fatal(err)
	}
	if !sameValue(in, got) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, in)
	}
	for text, want := range map[string]any{"on": true, "OFF": false, "Yes": true, "no": false, "'on'": "on", "y": "y", "30": int64(30), "1.5": 1.5, "null": nil, "": nil, "8MB": "8MB"} {
		got, err := decodeYAMLValue([]byte(text))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("decode %q = %#v (%v), want %#v", text, got, err, want)
		}
	}
}

// unifiedDiff against Python's difflib.unified_diff as patronictl prints it
// (expected texts produced by difflib).
func TestUnifiedDiffMatchesDifflib(t *testing.T) {
	// 201 lines where difflib's autojunk matters: a, b, c and d are
	// popular (more than 1% of the lines), so difflib aligns on the kNN
	// lines and shows a different hunk than a longest common subsequence.
	long := make([]string, 201)
	for i := range long {
		if i%11 == 0 {
			long[i] = fmt.Sprintf("k%d", i)
		} else {
			long[i] = string("abcd"[i*11%4])
		}
	}
	changed := slices.Clone(long)
	changed[36] = "NEW"
	changed = slices.Delete(changed, 34, 35)
	for _, c := range []struct{ a, b, want string }{
		{strings.Join(long, "\n") + "\n", strings.Join(changed, "\n") + "\n",
			"--- \n+++ \n@@ -32,9 +32,8 @@\n b\n a\n k33\n-c\n-b\n-a\n+b\n+NEW\n d\n c\n b\n"},
		// Where a longest common subsequence is not what difflib picks.
		{"c\nc\nc\ne\nd\ne\nd\na\na\nc\n", "a\nc\nc\ne\nd\nf\nd\na\na\nc\n",
			"--- \n+++ \n@@ -1,9 +1,9 @@\n-c\n+a\n c\n c\n e\n d\n-e\n+f\n d\n a\n a\n"},
		{"d\nd\na\nb\nd\nd\ne\n", "d\nd\na\nd\nd\nd\nc\nd\n",
			"--- \n+++ \n@@ -1,7 +1,8 @@\n d\n d\n a\n-b\n d\n d\n-e\n+d\n+c\n+d\n"},
		// Trailing newlines do not count (patronictl strips them).
		{"a\nb\n\n\n", "a\nb\n", ""},
		{"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n", "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nL\nm\n",
			"--- \n+++ \n@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -9,4 +9,5 @@\n i\n j\n k\n-l\n+L\n+m\n"},
		{"x\n", "y\n", "--- \n+++ \n@@ -1 +1 @@\n-x\n+y\n"},
		{"a\nb\n", "a\nb\nc\n", "--- \n+++ \n@@ -1,2 +1,3 @@\n a\n b\n+c\n"},
		{"a\nb\nc\n", "c\n", "--- \n+++ \n@@ -1,3 +1 @@\n-a\n-b\n c\n"},
		{"same\n", "same\n", ""},
	} {
		if got := unifiedDiff(c.a, c.b); got != c.want {
			t.Errorf("diff %q -> %q:\n got %q\nwant %q", c.a, c.b, got, c.want)
		}
	}
}

func TestParseScheduled(t *testing.T) {
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for in, want := range map[string]time.Time{
		"2030-01-01T02:00:00+00:00":        utc("2030-01-01T02:00:00Z"),
		"2030-01-01T02:00Z":                utc("2030-01-01T02:00:00Z"),
		"2030-01-01 03:00:00.5+01:00":      utc("2030-01-01T02:00:00.5Z"),
		"2030-01-01T03:00+0100":            utc("2030-01-01T02:00:00Z"),
		"2030-01-01T03:00:00 +01:00":       utc("2030-01-01T02:00:00Z"),
		"2030-01-01T04:00:00.000000+02:00": utc("2030-01-01T02:00:00Z"),
	} {
		got, err := parseScheduled(in)
		if err != nil || got == nil || !got.Equal(want) {
			t.Errorf("parseScheduled(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	local, err := parseScheduled("2030-01-01T02:00")
	if err != nil || local.Location() != time.Local || local.Hour() != 2 {
		t.Errorf("no zone: %v, %v; want local time", local, err)
	}
	for _, in := range []string{"", "now"} {
		if got, err := parseScheduled(in); got != nil || err != nil {
			t.Errorf("parseScheduled(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"tomorrow", "2030-13-01T00:00Z", "02:00"} {
		if _, err := parseScheduled(in); err == nil || !strings.Contains(err.Error(), "Unable to parse scheduled timestamp") {
			t.Errorf("parseScheduled(%q): %v", in, err)
		}
	}
	if got := isoformat(utc("2030-01-01T02:00:00.25Z")); got != "2030-01-01T02:00:00.250000+00:00" {
		t.Errorf("isoformat = %s", got)
	}
	if got := timestamp(fixedNow); got != "2024-05-01 10:00:00.12345" {
		t.Errorf("timestamp = %s", got)
	}
}

func TestCheckPostgresVersion(t *testing.T) {
	for _, ok := range []string{"9.6", "9.6.24", "15.4", "16.0.1"} {
		if err := checkPostgresVersion(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"15", "15.4.1.2", "fifteen", "15.x", ""} {
		if err := checkPostgresVersion(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRewriteQueryArgs(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"-c", "x.toml", "query", "-c", "SELECT 1", "-d", "db"}, []string{"-c", "x.toml", "query", "--command", "SELECT 1", "--dbname", "db"}},
		{[]string{"-d", "etcd3://h", "-k", "query", "demo", "-cSELECT", "-d=db", "--", "-c"}, []string{"-d", "etcd3://h", "-k", "query", "demo", "--command=SELECT", "--dbname=db", "--", "-c"}},
		{[]string{"-c", "query", "list", "-c", "y"}, []string{"-c", "query", "list", "-c", "y"}},
		{[]string{"list", "-d", "x"}, []string{"list", "-d", "x"}},
	} {
		if got := rewriteQueryArgs(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("rewriteQueryArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Members in a replicatefrom cycle hang from nobody and are left out, as
// with patronictl; a replicatefrom naming the leader or an unknown member
// means the leader.
func TestTopologyOrder(t *testing.T) {
	m := func(name, role, from string) api.MemberInfo {
		return api.MemberInfo{Name: name, Role: role, Tags: cluster.Tags{ReplicateFrom: from}}
	}
	got := topologyOrder([]api.MemberInfo{
		m("a", api.MemberReplica, "b"), m("b", api.MemberReplica, "a"), m("c", api.MemberReplica, "nobody"),
		m("d", api.MemberLeader, ""), m("e", api.MemberReplica, "d"), m("f", api.MemberReplica, "e"),
	})
	var names []string
	for _, mi := range got {
		names = append(names, mi.Name)
	}
	if want := []string{"d", "+ c", "+ e", "  + f"}; !reflect.DeepEqual(names, want) {
		t.Errorf("order = %q, want %q", names, want)
	}
	got = topologyOrder([]api.MemberInfo{m("x", api.MemberReplica, ""), m("y", api.MemberReplica, "x")})
	if len(got) != 2 || got[0].Name != "+ x" || got[1].Name != "  + y" {
		t.Errorf("no leader: %+v", got)
	}
}

func TestPatchConfigAndSetPath(t *testing.T) {
	cfg := map[string]any{"a": int64(1), "p": map[string]any{"x": int64(1), "y": map[string]any{"z": int64(2)}}}
	patchConfig(cfg, map[string]any{"a": nil, "p": map[string]any{"x": nil, "y": map[string]any{"w": int64(3)}}, "n": map[string]any{"k": nil, "v": true}})
	want := map[string]any{"p": map[string]any{"y": map[string]any{"z": int64(2), "w": int64(3)}}, "n": map[string]any{"v": true}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("patched = %#v", cfg)
	}
	out, err := applyPairs(map[string]any{"postgresql": map[string]any{"parameters": map[string]any{"a.b": int64(1)}}},
		[]string{"postgresql.parameters.a.b=null", "x.y.z= 5", "ttl=30"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"x": map[string]any{"y": map[string]any{"z": int64(5)}}, "ttl": int64(30)}; !reflect.DeepEqual(out, want) {
		t.Errorf("pairs = %#v", out)
	}
}
