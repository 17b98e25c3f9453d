package postgres

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// HistoryEntry is one line of a timeline history file: the server left
// Timeline at SwitchPoint, for Reason, and started the next timeline.
type HistoryEntry struct {
	Timeline    int
	SwitchPoint LSN
	Reason      string
}

// ParseHistory parses a timeline history file (pg_wal/0000000N.history,
// or what TIMELINE_HISTORY returns). Blank lines and '#' comments are
// skipped, as PostgreSQL does. Parent timelines must increase.
func ParseHistory(data []byte) ([]HistoryEntry, error) {
	var entries []HistoryEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.SplitN(text, "\t", 3)
		if len(fields) < 2 {
			fields = strings.Fields(text)
			if len(fields) < 2 {
				return nil, fmt.Errorf("parsing timeline history line %d %q: want timeline, switch point and reason", line, text)
			}
			if len(fields) > 3 {
				fields = append(fields[:2], strings.Join(fields[2:], " "))
			}
		}
		tl, err := strconv.Atoi(strings.TrimSpace(fields[0]))
		if err != nil || tl <= 0 {
			return nil, fmt.Errorf("parsing timeline history line %d: bad timeline %q", line, fields[0])
		}
		lsn, err := ParseLSN(fields[1])
		if err != nil {
			return nil, fmt.Errorf("parsing timeline history line %d: %w", line, err)
		}
		if n := len(entries); n > 0 && tl <= entries[n-1].Timeline {
			return nil, fmt.Errorf("parsing timeline history line %d: timeline %d after %d", line, tl, entries[n-1].Timeline)
		}
		e := HistoryEntry{Timeline: tl, SwitchPoint: lsn}
		if len(fields) == 3 {
			e.Reason = strings.TrimSpace(fields[2])
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading timeline history: %w", err)
	}
	return entries, nil
}

// HistoryFileName is the name of the history file of a timeline in
// pg_wal ("00000002.history").
func HistoryFileName(timeline int) string { return fmt.Sprintf("%08X.history", timeline) }
