package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Failover is the /failover value: a requested switchover or failover.
type Failover struct {
	Leader      string     `json:"leader,omitempty"`
	Candidate   string     `json:"member,omitempty"`
	ScheduledAt *time.Time `json:"-"`
	Version     string     `json:"-"`
}

// IsEmpty reports whether the value asks for nothing ({} after cleanup).
func (f Failover) IsEmpty() bool {
	return f.Leader == "" && f.Candidate == "" && f.ScheduledAt == nil
}

type failoverJSON struct {
	Leader      string `json:"leader,omitempty"`
	Member      string `json:"member,omitempty"`
	Candidate   string `json:"candidate,omitempty"`
	ScheduledAt string `json:"scheduled_at,omitempty"`
}

// ParseFailover decodes the JSON form, or the legacy "leader:candidate".
// Anything else is an error: Patroni reads any text as a legacy value (so
// "garbage" is a failover away from a leader named garbage, which drops
// the lag check of the leader race); custos requests nothing then.
func ParseFailover(data []byte) (Failover, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return Failover{}, nil
	}
	if trimmed[0] != '{' {
		leader, candidate, ok := strings.Cut(string(trimmed), ":")
		if !ok || strings.ContainsAny(string(trimmed), "{}[]\"\n") {
			return Failover{}, fmt.Errorf("failover: %q is neither JSON nor leader:candidate", truncate(string(trimmed)))
		}
		return Failover{Leader: strings.TrimSpace(leader), Candidate: strings.TrimSpace(candidate)}, nil
	}
	var raw failoverJSON
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return Failover{}, fmt.Errorf("failover: %w", err)
	}
	f := Failover{Leader: raw.Leader, Candidate: raw.Member}
	if f.Candidate == "" {
		f.Candidate = raw.Candidate
	}
	if raw.ScheduledAt != "" {
		at, err := ParseTime(raw.ScheduledAt)
		if err != nil {
			return Failover{}, fmt.Errorf("failover: scheduled_at: %w", err)
		}
		f.ScheduledAt = &at
	}
	return f, nil
}

// Marshal encodes the value as Patroni writes it.
func (f Failover) Marshal() []byte {
	raw := failoverJSON{Leader: f.Leader, Member: f.Candidate}
	if f.ScheduledAt != nil {
		raw.ScheduledAt = FormatTime(*f.ScheduledAt)
	}
	b, _ := json.Marshal(raw)
	return b
}

// ParseTime parses the ISO 8601 timestamps Patroni writes and accepts
// ("2030-01-01T00:00:00+00:00", with or without fractions, "Z", or a space
// instead of the T). A timestamp without a zone is an error.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02 15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 time with a time zone", s)
}

// FormatTime renders a time as Patroni does: ISO 8601 with the offset.
func FormatTime(t time.Time) string { return t.Format("2006-01-02T15:04:05.999999-07:00") }

// SyncState is the /sync value.
type SyncState struct {
	Leader      string
	SyncStandby []string
	Quorum      int
	Version     string
}

type syncJSON struct {
	Leader      string  `json:"leader"`
	Quorum      *int    `json:"quorum,omitempty"`
	SyncStandby *string `json:"sync_standby"`
}

// ParseSyncState decodes /sync. "{}" and empty values decode to an empty
// state.
func ParseSyncState(data []byte) (SyncState, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return SyncState{}, nil
	}
	var raw struct {
		Leader      *string         `json:"leader"`
		Quorum      json.RawMessage `json:"quorum"`
		SyncStandby json.RawMessage `json:"sync_standby"`
	}
	if !isObject(trimmed) {
		return SyncState{}, errors.New("sync: not a JSON object")
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return SyncState{}, fmt.Errorf("sync: %w", err)
	}
	s := SyncState{}
	if raw.Leader != nil {
		s.Leader = *raw.Leader
	}
	if len(raw.Quorum) > 0 && string(raw.Quorum) != "null" {
		var q any
		if err := json.Unmarshal(raw.Quorum, &q); err != nil {
			return SyncState{}, fmt.Errorf("sync: quorum: %w", err)
		}
		n, ok := intValue(q)
		if !ok {
			return SyncState{}, fmt.Errorf("sync: quorum %s is not an integer", raw.Quorum)
		}
		s.Quorum = n
	}
	if len(raw.SyncStandby) > 0 && string(raw.SyncStandby) != "null" {
		var names string
		if err := json.Unmarshal(raw.SyncStandby, &names); err != nil {
			var list []string
			if lerr := json.Unmarshal(raw.SyncStandby, &list); lerr != nil {
				return SyncState{}, fmt.Errorf("sync: sync_standby: %w", err)
			}
			names = strings.Join(list, ",")
		}
		for _, n := range strings.Split(names, ",") {
			if n = strings.TrimSpace(n); n != "" {
				s.SyncStandby = append(s.SyncStandby, n)
			}
		}
	}
	switch {
	case s.Quorum < 0:
		return SyncState{}, fmt.Errorf("sync: quorum %d is negative", s.Quorum)
	case s.Leader == "" && (len(s.SyncStandby) > 0 || s.Quorum > 0):
		// Without a leader the value would put no condition on the
		// leader race: it cannot be what its writer meant.
		return SyncState{}, errors.New("sync: synchronous standbys or a quorum without a leader")
	}
	return s, nil
}

// Marshal encodes /sync in Patroni's form: sync_standby a sorted,
// comma-joined list or null.
func (s SyncState) Marshal() []byte {
	raw := syncJSON{Leader: s.Leader}
	if len(s.SyncStandby) > 0 {
		names := append([]string(nil), s.SyncStandby...)
		sort.Strings(names)
		joined := strings.Join(names, ",")
		raw.SyncStandby = &joined
	}
	q := s.Quorum
	raw.Quorum = &q
	b, _ := json.Marshal(raw)
	return b
}

// Matches reports whether the member is listed as synchronous
// (case-insensitively, as Patroni 4.x).
func (s SyncState) Matches(name string) bool {
	for _, n := range s.SyncStandby {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// HistoryLine is one line of /history.
type HistoryLine struct {
	Timeline  int
	LSN       int64
	Reason    string
	Timestamp string
	NewLeader string
}

// History is the /history value.
type History []HistoryLine

// ParseHistory decodes the JSON array of lines [tl, lsn, reason, ts,
// new_leader]; the last two fields are optional.
func ParseHistory(data []byte) (History, error) {
	var raw [][]any
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, errors.New("history: not a JSON array")
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	h := make(History, 0, len(raw))
	for i, line := range raw {
		if len(line) < 3 {
			return nil, fmt.Errorf("history: line %d has %d fields, want at least 3", i, len(line))
		}
		tl, ok1 := intValue(line[0])
		lsn, ok2 := line[1].(float64)
		reason, _ := line[2].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("history: line %d: timeline and LSN must be numbers", i)
		}
		if tl < 1 || lsn < 0 {
			return nil, fmt.Errorf("history: line %d: timeline %d or LSN %v out of range", i, tl, lsn)
		}
		hl := HistoryLine{Timeline: tl, LSN: int64(lsn), Reason: reason}
		if len(line) > 3 {
			hl.Timestamp, _ = line[3].(string)
		}
		if len(line) > 4 {
			hl.NewLeader, _ = line[4].(string)
		}
		h = append(h, hl)
	}
	return h, nil
}

// Marshal encodes the history as Patroni does.
func (h History) Marshal() []byte {
	out := make([][]any, 0, len(h))
	for _, l := range h {
		line := []any{l.Timeline, l.LSN, l.Reason}
		if l.Timestamp != "" || l.NewLeader != "" {
			line = append(line, l.Timestamp)
		}
		if l.NewLeader != "" {
			line = append(line, l.NewLeader)
		}
		out = append(out, line)
	}
	b, _ := json.Marshal(out)
	return b
}

// Status is the /status value: the leader's last WAL position and slots.
type Status struct {
	Optime      int64            `json:"optime"`
	Slots       map[string]int64 `json:"slots,omitempty"`
	RetainSlots []string         `json:"retain_slots,omitempty"`
}

// ParseStatus decodes /status; a bare integer (legacy) is the optime.
func ParseStatus(data []byte) (Status, error) {
	trimmed := bytes.TrimSpace(data)
	if n, err := strconv.ParseInt(string(trimmed), 10, 64); err == nil && n >= 0 {
		return Status{Optime: n}, nil
	}
	var s Status
	if !isObject(trimmed) {
		return Status{}, errors.New("status: neither a JSON object nor a position")
	}
	if err := json.Unmarshal(trimmed, &s); err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	if s.Optime < 0 {
		return Status{}, fmt.Errorf("status: optime %d is negative", s.Optime)
	}
	return s, nil
}

// Marshal encodes /status compactly.
func (s Status) Marshal() []byte {
	b, _ := json.Marshal(s)
	return b
}

// Failsafe is the /failsafe value: member name -> api_url.
type Failsafe map[string]string

// ParseFailsafe decodes /failsafe.
func ParseFailsafe(data []byte) (Failsafe, error) {
	var f Failsafe
	trimmed := bytes.TrimSpace(data)
	if !isObject(trimmed) {
		return nil, errors.New("failsafe: not a JSON object")
	}
	if err := json.Unmarshal(trimmed, &f); err != nil {
		return nil, fmt.Errorf("failsafe: %w", err)
	}
	return f, nil
}

// Marshal encodes /failsafe compactly.
func (f Failsafe) Marshal() []byte {
	b, _ := json.Marshal(map[string]string(f))
	return b
}
