package api

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// Health check results: Patroni answers only these two codes.
const (
	healthy   = http.StatusOK
	unhealthy = http.StatusServiceUnavailable
)

func code(ok bool) int {
	if ok {
		return healthy
	}
	return unhealthy
}

// query holds the query parameters as Patroni reads them (parse_qs): a
// parameter with an empty value counts as absent, and only the first value
// of a repeated parameter is used.
type query url.Values

func parseQuery(raw string) query {
	if raw == "" {
		return nil
	}
	v, _ := url.ParseQuery(raw) // a malformed pair is skipped, as parse_qs does
	for k, vals := range v {
		if len(vals) == 0 || vals[0] == "" {
			delete(v, k)
		}
	}
	return query(v)
}

func (q query) get(key string) string {
	if vals := q[key]; len(vals) > 0 {
		return vals[0]
	}
	return ""
}

// healthCheck decides a GET/HEAD/OPTIONS health check on path exactly as
// Patroni's do_GET: the role codes first, then the path by substring, then
// the tag_<k>=<v> filters (docs/restapi.md lists the paths).
func healthCheck(s *Snapshot, path string, q query, now time.Time) int {
	if path == "/" {
		path = "/primary"
	}
	st := &s.Status
	view := s.view()

	maxLag := int64(math.MaxInt64)
	if v := q.get("lag"); v != "" {
		if n, ok := parseLag(v); ok {
			maxLag = n
		}
	}
	optime := s.leaderOptime()
	lagging := optime != 0 && optime-st.XLog.Replayed() > maxLag
	wantState := q.get("replication_state")
	replicaOK := !st.Tags.NoLoadBalance && !lagging &&
		st.Role == cluster.RoleReplica && st.State == StateRunning &&
		(wantState == "" || wantState == st.ReplicationState)

	var leaderOK, primaryOK, standbyLeaderOK bool
	switch {
	case view == nil && st.Pause:
		// Paused and cut off from the DCS: PostgreSQL's own role decides.
		primaryOK = cluster.IsPrimaryRole(st.Role)
		standbyLeaderOK = st.Role == cluster.RoleStandbyLeader
		leaderOK = primaryOK || standbyLeaderOK
	case s.leaderOK(now):
		leaderOK = true
		if s.Dynamic.StandbyCluster != nil {
			replicaOK = false
			standbyLeaderOK = st.Role == cluster.RoleReplica || st.Role == cluster.RoleStandbyLeader
		} else {
			primaryOK = true
		}
	}

	result, ignoreTags := unhealthy, false
	switch {
	case strings.Contains(path, "standby_leader") || strings.Contains(path, "standby-leader"):
		result, ignoreTags = code(standbyLeaderOK), true
	case strings.Contains(path, "leader"):
		result, ignoreTags = code(leaderOK), true
	case strings.Contains(path, "master") || strings.Contains(path, "primary") || strings.Contains(path, "read-write"):
		result, ignoreTags = code(primaryOK), true
	case strings.Contains(path, "replica"):
		result = code(replicaOK)
	case strings.Contains(path, "read-only") && !strings.Contains(path, "sync") && !strings.Contains(path, "quorum"):
		result = code(primaryOK || standbyLeaderOK || replicaOK)
	case strings.Contains(path, "health"):
		result = code(st.State == StateRunning)
	case view != nil:
		isSync, isQuorum := st.SyncStandby, st.QuorumStandby
		switch path {
		case "/sync", "/synchronous":
			result = code(isSync && replicaOK)
		case "/quorum":
			result = code(isQuorum && replicaOK)
		case "/async", "/asynchronous":
			result = code(!isSync && !isQuorum && replicaOK)
		case "/read-only-quorum":
			result = code(primaryOK || standbyLeaderOK || isQuorum && replicaOK)
		case "/read-only-sync", "/read-only-synchronous":
			result = code(primaryOK || standbyLeaderOK || isSync && replicaOK)
		}
	}

	if result == healthy && !ignoreTags && !tagsMatch(st.Tags, q) {
		result = unhealthy
	}
	return result
}

// tagPrefix marks the query parameters that filter on this member's tags.
const tagPrefix = "tag_"

// tagsMatch checks every tag_<k>=<v> parameter against the tags: a missing
// tag fails, a non-string value is compared as Python's lower-cased str().
func tagsMatch(tags cluster.Tags, q query) bool {
	for k := range q {
		name, ok := strings.CutPrefix(k, tagPrefix)
		if !ok {
			continue
		}
		have, ok := tagValue(tags, name)
		if !ok || have != q.get(k) {
			return false
		}
	}
	return true
}

// tagValue is the tag as Patroni's configured tags hold it: the predefined
// booleans only when true, the rest as configured.
func tagValue(t cluster.Tags, name string) (string, bool) {
	switch name {
	case "nofailover":
		return "true", t.NoFailover
	case "noloadbalance":
		return "true", t.NoLoadBalance
	case "clonefrom":
		return "true", t.CloneFrom
	case "nosync":
		return "true", t.NoSync
	case "nostream":
		return "true", t.NoStream
	case "replicatefrom":
		return t.ReplicateFrom, t.ReplicateFrom != ""
	case "failover_priority":
		if t.FailoverPriority == nil {
			return "", false
		}
		return strconv.Itoa(*t.FailoverPriority), true
	case "sync_priority":
		if t.SyncPriority == nil {
			return "", false
		}
		return strconv.Itoa(*t.SyncPriority), true
	}
	v, ok := t.Custom[name]
	if !ok || v == nil {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return strings.ToLower(fmt.Sprint(v)), true
}

// livenessCheck is GET /liveness (no SQL): healthy while paused or
// while the HA loop keeps running. The next cycle is due LoopWait after the
// last one ended; it may be late by ttl on a running primary (after that the
// leader key is gone anyway) and by twice that elsewhere.
func livenessCheck(s *Snapshot, now time.Time) int {
	if s.Status.Pause {
		return healthy
	}
	threshold := s.Dynamic.TTL.Duration()
	if !(cluster.IsPrimaryRole(s.Status.Role) && s.Status.IsRunning()) {
		threshold *= 2
	}
	return code(now.Before(s.LastLoop.Add(s.Dynamic.LoopWait.Duration() + threshold)))
}

// readinessCheck is GET /readiness with Patroni 4.1's rules: the leader is
// ready; others need PostgreSQL running and streaming, the DCS reachable (or
// failsafe active) and a lag within ?lag (default maximum_lag_on_failover),
// measured on the replayed position, or the received one with ?mode=write.
func readinessCheck(s *Snapshot, q query, now time.Time) int {
	if s.leaderOK(now) {
		return healthy
	}
	st := &s.Status
	if st.State != StateRunning || st.ReplicationState != ReplicationStreaming {
		return unhealthy
	}
	if s.view() == nil && s.LatestEndLSN == 0 {
		return code(st.FailsafeModeIsActive)
	}
	position := st.XLog.Replayed()
	if q.get("mode") == "write" {
		position = st.XLog.Received()
	}
	maxLag := int64(s.Dynamic.MaximumLagOnFailover)
	if n, ok := parseLag(q.get("lag")); ok {
		maxLag = n
	}
	return code(s.leaderOptime()-position <= maxLag)
}

// byteUnits are the units a lag may carry (PostgreSQL's memory units,
// case-sensitive, powers of 1024).
var byteUnits = map[string]float64{
	"B":  1,
	"kB": 1 << 10,
	"MB": 1 << 20,
	"GB": 1 << 30,
	"TB": 1 << 40,
}

// parseLag reads a byte count as Patroni's parse_int(value, "B") does:
// "1048576", "16kB", "10 MB", "1.5GB". It reports false for anything else.
func parseLag(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	end := 0
	if end < len(s) && (s[end] == '+' || s[end] == '-') {
		end++
	}
	digits := 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.') {
		end++
		digits++
	}
	if digits == 0 {
		return 0, false
	}
	n, err := strconv.ParseFloat(s[:end], 64)
	if err != nil {
		return 0, false
	}
	mult := 1.0
	if unit := strings.TrimSpace(s[end:]); unit != "" {
		var ok bool
		if mult, ok = byteUnits[unit]; !ok {
			return 0, false
		}
	}
	v := math.Round(n * mult)
	if v >= math.MaxInt64 {
		return math.MaxInt64, true
	}
	if v <= math.MinInt64 {
		return math.MinInt64, true
	}
	return int64(v), true
}
