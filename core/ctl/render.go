package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
)

// Columns of `list`: Patroni 3.0.2's, in its order.
const (
	colCluster          = "Cluster"
	colMember           = "Member"
	colHost             = "Host"
	colRole             = "Role"
	colState            = "State"
	colTL               = "TL"
	colLag              = "Lag in MB"
	colPendingRestart   = "Pending restart"
	colScheduledRestart = "Scheduled restart"
	colTags             = "Tags"
)

// Output formats of `list`.
const (
	formatPretty = "pretty"
	formatTSV    = "tsv"
	formatJSON   = "json"
	formatYAML   = "yaml"
	// formatYML is patronictl's alias of yaml.
	formatYML = "yml"
)

// defaultPGPort is PostgreSQL's port; Host shows the port only when some
// member uses another one (or two members share a host).
const defaultPGPort = 5432

// mebibyte is the unit of the Lag in MB column.
const mebibyte = 1 << 20

// listing is one cluster as `list` shows it. Cells hold what patronictl
// puts there: a string ("" is blank), an int (TL, Lag in MB) or the tags
// as a map.
type listing struct {
	// title is injected into the top border of the pretty table.
	title   string
	columns []string
	rows    [][]any
	// serviceInfo are the lines printed under the pretty table.
	serviceInfo []string
	// flowTags writes the Tags cells of the pretty table in YAML flow
	// style, as patronictl's topology does (list uses block style).
	flowTags bool
}

// newListing builds the listing of the cluster named name from a DCS read,
// the way patronictl 3.0.2's output_members does.
func newListing(name string, c *cluster.Cluster, extended bool) listing {
	return buildListing(name, c, extended, false)
}

// newTopology is the listing of `topology`: the members as a tree, each
// replica under the member it replicates from (tag replicatefrom) or
// under the leader, its name indented with "+ " by depth.
func newTopology(name string, c *cluster.Cluster) listing {
	return buildListing(name, c, false, true)
}

func buildListing(name string, c *cluster.Cluster, extended, tree bool) listing {
	dyn, _ := dynamicOf(c)
	info := api.NewClusterInfo(c, name, dyn)
	if tree {
		info.Members = topologyOrder(info.Members)
	}
	l := listing{title: fmt.Sprintf(" Cluster: %s (%s) ", name, initializeState(c)), flowTags: tree}

	l.columns = []string{colCluster, colMember, colHost, colRole, colState, colTL, colLag}
	optional := []struct {
		name    string
		present func(api.MemberInfo) bool
	}{
		{colPendingRestart, func(m api.MemberInfo) bool { return m.PendingRestart }},
		{colScheduledRestart, func(m api.MemberInfo) bool { return len(m.ScheduledRestart) > 0 }},
		{colTags, func(m api.MemberInfo) bool { return !m.Tags.IsZero() }},
	}
	for _, o := range optional {
		if extended || slices.ContainsFunc(info.Members, o.present) {
			l.columns = append(l.columns, o.name)
		}
	}

	withPort := showPorts(info.Members)
	for _, m := range info.Members {
		values := map[string]any{
			colCluster:          name,
			colMember:           m.Name,
			colHost:             hostCell(m, withPort),
			colRole:             roleTitle(m.Role),
			colState:            m.State,
			colTL:               timelineCell(m.Timeline),
			colLag:              lagCell(m.Lag),
			colPendingRestart:   "",
			colScheduledRestart: scheduledRestartCell(m.ScheduledRestart),
			colTags:             "",
		}
		if m.PendingRestart {
			values[colPendingRestart] = "*"
		}
		if !m.Tags.IsZero() {
			values[colTags] = tagsValue(m.Tags)
		}
		row := make([]any, len(l.columns))
		for i, col := range l.columns {
			row[i] = values[col]
		}
		l.rows = append(l.rows, row)
	}

	if info.Pause {
		l.serviceInfo = append(l.serviceInfo, "Maintenance mode: on")
	}
	if s := info.ScheduledSwitchover; s != nil {
		line := "Switchover scheduled at: " + s.At
		if s.From != "" {
			line += fmt.Sprintf("\n%24s: %s", "from", s.From)
		}
		if s.To != "" {
			line += fmt.Sprintf("\n%24s: %s", "to", s.To)
		}
		l.serviceInfo = append(l.serviceInfo, line)
	}
	return l
}

// topologyOrder orders the members as patronictl's topology_sort: the
// leader (or standby leader) first, then depth first each member's
// replicas, a replica's parent being its replicatefrom member when that is
// another replica, else the leader. Names get "+ " indented two spaces per
// level below the first. Members in a replicatefrom cycle are not reached
// and not shown, as with patronictl.
func topologyOrder(members []api.MemberInfo) []api.MemberInfo {
	isLeader := func(m api.MemberInfo) bool { return strings.HasSuffix(m.Role, "leader") }
	leader := ""
	replicas := map[string]bool{}
	for _, m := range members {
		if isLeader(m) {
			if leader == "" {
				leader = m.Name
			}
		} else {
			replicas[m.Name] = true
		}
	}
	children := map[string][]api.MemberInfo{}
	for _, m := range members {
		if isLeader(m) {
			continue
		}
		parent := m.Tags.ReplicateFrom
		if parent == "" || parent == m.Name || !replicas[parent] {
			parent = leader
		}
		children[parent] = append(children[parent], m)
	}
	var out []api.MemberInfo
	var walk func(name string, level int)
	walk = func(name string, level int) {
		for _, m := range children[name] {
			own := m.Name
			m.Name = strings.Repeat(" ", (level-1)*2) + "+ " + own
			out = append(out, m)
			walk(own, level+1)
		}
	}
	for _, m := range members {
		if m.Name == leader {
			out = append(out, m)
			break
		}
	}
	walk(leader, 1)
	return out
}

// initializeState is the title's parenthesis: the system identifier,
// "uninitialized" without an initialize key, "initializing" while it is
// empty.
func initializeState(c *cluster.Cluster) string {
	switch {
	case c.Initialize == nil:
		return "uninitialized"
	case *c.Initialize == "":
		return "initializing"
	}
	return *c.Initialize
}

// showPorts reports whether Host shows host:port: when a member listens on
// a port other than 5432 or two members share a host.
func showPorts(members []api.MemberInfo) bool {
	hosts := map[string]bool{}
	n := 0
	for _, m := range members {
		if m.Host == "" {
			continue
		}
		n++
		hosts[m.Host] = true
		if m.Port != 0 && m.Port != defaultPGPort {
			return true
		}
	}
	return len(hosts) < n
}

func hostCell(m api.MemberInfo, withPort bool) string {
	if withPort && m.Host != "" && m.Port != 0 {
		return m.Host + ":" + strconv.Itoa(m.Port)
	}
	return m.Host
}

// roleTitle writes a role as patronictl does: underscores to spaces, each
// word capitalised ("sync_standby" -> "Sync Standby").
func roleTitle(role string) string {
	var b strings.Builder
	start := true
	for _, r := range strings.ReplaceAll(role, "_", " ") {
		if unicode.IsLetter(r) {
			if start {
				r = unicode.ToUpper(r)
			} else {
				r = unicode.ToLower(r)
			}
			start = false
		} else {
			start = true
		}
		b.WriteRune(r)
	}
	return b.String()
}

// timelineCell is the TL cell: blank when the member published none.
func timelineCell(tl int) any {
	if tl == 0 {
		return ""
	}
	return tl
}

// lagCell is the Lag in MB cell: blank for the leader, "unknown" when the
// member published no position, else the lag in MiB rounded half to even
// (Python's round, which patronictl uses).
func lagCell(l *api.Lag) any {
	switch {
	case l == nil:
		return ""
	case !l.Known:
		return "unknown"
	}
	return int64(math.RoundToEven(float64(l.Bytes) / mebibyte))
}

// tagsValue is the Tags cell: the tags as a JSON-like tree whose numbers
// are int64 when integral, as Python reads the member's JSON (the tags keep
// other tags' numbers as float64).
func tagsValue(t cluster.Tags) any {
	data, err := json.Marshal(t)
	if err != nil {
		return t.Map()
	}
	v, err := config.DecodeJSON(data)
	if err != nil {
		return t.Map()
	}
	return v
}

// scheduledRestartCell is the schedule, with its version condition.
func scheduledRestartCell(sr map[string]any) string {
	if len(sr) == 0 {
		return ""
	}
	s := fmt.Sprint(sr["schedule"])
	if v, ok := sr["postgres_version"]; ok {
		s += fmt.Sprintf(" if version < %v", v)
	}
	return s
}

// write prints the listing in one of the formats.
func (l listing) write(w io.Writer, format string) error {
	switch format {
	case formatPretty:
		return l.writePretty(w)
	case formatTSV:
		return l.writeTSV(w)
	case formatJSON:
		return l.writeJSON(w)
	case formatYAML, formatYML:
		return l.writeYAML(w)
	}
	return fmt.Errorf("unknown format %q: use pretty, tsv, json or yaml", format)
}

// writePretty prints the bordered table (without the Cluster column, whose
// name is in the title) and the service information under it.
func (l listing) writePretty(w io.Writer) error {
	t := table{title: l.title, columns: l.columns[1:], rightAligned: map[string]bool{colTL: true, colLag: true}}
	for _, r := range l.rows {
		cells := make([]string, 0, len(r)-1)
		for _, v := range r[1:] {
			cells = append(cells, cellString(v, l.flowTags))
		}
		t.rows = append(t.rows, cells)
	}
	out := t.String()
	if len(l.serviceInfo) > 0 {
		out += " " + strings.Join(l.serviceInfo, "\n ") + "\n"
	}
	_, err := io.WriteString(w, out)
	return err
}

// writeTSV prints a header line and one line per member, Cluster first,
// tab-separated; tags in YAML flow style.
func (l listing) writeTSV(w io.Writer) error {
	var b strings.Builder
	b.WriteString(strings.Join(l.columns, "\t") + "\n")
	for _, r := range l.rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = cellString(v, true)
		}
		b.WriteString(strings.Join(cells, "\t") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON prints one JSON list of objects, keys in column order, blank
// cells left out, written the way Python's json.dumps writes (patronictl's
// separators and ASCII escapes).
func (l listing) writeJSON(w io.Writer) error {
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range l.rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('{')
		first := true
		for j, v := range r {
			if isBlank(v) {
				continue
			}
			if !first {
				b.WriteString(", ")
			}
			first = false
			b.WriteString(pyJSON(l.columns[j]) + ": " + pyJSON(v))
		}
		b.WriteByte('}')
	}
	b.WriteString("]\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeYAML prints a YAML list of mappings, keys sorted, blank cells left
// out (PyYAML's safe_dump, as patronictl uses it).
func (l listing) writeYAML(w io.Writer) error {
	rows := make([]any, 0, len(l.rows))
	for _, r := range l.rows {
		values := map[string]any{}
		for j, v := range r {
			if !isBlank(v) {
				values[l.columns[j]] = v
			}
		}
		rows = append(rows, values)
	}
	// patronictl echoes the YAML with a newline of its own.
	_, err := io.WriteString(w, pyYAML(rows)+"\n")
	return err
}

func isBlank(v any) bool {
	s, ok := v.(string)
	return ok && s == ""
}

// cellString is a cell as text: tags as YAML (block style in list's
// pretty table, flow style in tsv and topology), numbers in decimal.
func cellString(v any, flow bool) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		if flow {
			return strings.TrimSpace(pyYAMLFlow(x))
		}
		return strings.TrimSpace(pyYAML(x))
	}
	return fmt.Sprint(v)
}

// pyJSON encodes a value as Python's json.dumps does by default: ", " and
// ": " separators, non-ASCII escaped as \uXXXX, maps with sorted keys.
func pyJSON(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case string:
		return pyJSONString(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = pyJSON(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = pyJSONString(k) + ": " + pyJSON(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return pyJSONString(fmt.Sprint(v))
}

func pyJSONString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r >= 0x7f && r <= 0xffff):
			fmt.Fprintf(&b, `\u%04x`, r)
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
