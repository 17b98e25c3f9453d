package pgbackrest

import (
	"math"
	"regexp"
	"strconv"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// fileLine matches the detail line pgBackRest logs for each restored file,
// "P01 DETAIL: restore file /data/base/1/1255 (768KB, 3.45%) checksum
// ...", or, with --delta, "... - exists and matches backup (768KB,
// 3.45%) ...": the percent is the share of the backup's bytes done.
var fileLine = regexp.MustCompile(`DETAIL: restore file .*\((?:[^,()]*, )?([0-9]+(?:\.[0-9]+)?)%\)`)

// ParseProgress turns one line of pgBackRest's output into a progress
// report; ok is false when the line does not report a restored file.
func ParseProgress(line string) (p replica.Progress, ok bool) {
	p = replica.Progress{Message: line, Percent: replica.PercentUnknown}
	m := fileLine.FindStringSubmatch(line)
	if m == nil {
		return p, false
	}
	pct, err := strconv.ParseFloat(m[1], 64)
	if err != nil || math.IsNaN(pct) {
		return p, false
	}
	p.Percent = int(min(max(math.Floor(pct), 0), 100))
	return p, true
}
