package basebackup

import (
	"math"
	"regexp"
	"strconv"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// progressLine matches pg_basebackup's --progress report,
// "  1234/56789 kB (2%), 0/1 tablespace (...)"; the total is 0 with
// --no-estimate-size. The plugin runs it with LC_ALL=C so the words stay
// English.
var progressLine = regexp.MustCompile(`^\s*([0-9]+)/([0-9]+) kB \(([0-9]+)%\)`)

// ParseProgress turns one line of pg_basebackup's output into a progress
// report; ok is false when the line is not a progress report.
func ParseProgress(line string) (p replica.Progress, ok bool) {
	m := progressLine.FindStringSubmatch(line)
	if m == nil {
		return replica.Progress{Message: line, Percent: replica.PercentUnknown}, false
	}
	done, err1 := strconv.ParseInt(m[1], 10, 64)
	total, err2 := strconv.ParseInt(m[2], 10, 64)
	pct, err3 := strconv.Atoi(m[3])
	if err1 != nil || err2 != nil || err3 != nil || done > math.MaxInt64/1024 || total > math.MaxInt64/1024 {
		return replica.Progress{Message: line, Percent: replica.PercentUnknown}, false
	}
	p = replica.Progress{Message: line, Percent: replica.PercentUnknown, DoneBytes: done * 1024}
	if total > 0 {
		p.TotalBytes = total * 1024
		p.Percent = min(max(pct, 0), 100)
	}
	return p, true
}
