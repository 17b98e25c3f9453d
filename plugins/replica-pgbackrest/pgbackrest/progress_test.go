package pgbackrest

import (
	"testing"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

func TestParseProgress(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		pct  int
	}{
		{"2026-12-08 01:02:03.456 P01 DETAIL: restore file /pg/data/base/1/1255 (768KB, 3.45%) checksum 0123abcd", true, 3},
		{"P02 DETAIL: restore file /pg/data/global/pg_filenode.map (512B, 99.99%) checksum 0123", true, 99},
		{"P01 DETAIL: restore file /pg/data/PG_VERSION (3B, 100.00%) checksum 0123", true, 100},
		{"P01 DETAIL: restore file /pg/data/base/1/2600 - exists and matches backup (8KB, 41.20%) checksum 0123", true, 41},
		{"P01 DETAIL: restore file /pg/data/base/1/2601 (0B, 41.20%)", true, 41},
		{"2026-12-08 01:02:03.456 P00   INFO: restore global/pg_control (performed last to ensure aborted restores cannot be started)", false, replica.PercentUnknown},
		{"P00   INFO: restore size = 22.2MB, file total = 970", false, replica.PercentUnknown},
		{"P00  ERROR: [075]: no backup set found to restore", false, replica.PercentUnknown},
		{"", false, replica.PercentUnknown},
	} {
		got, ok := ParseProgress(tc.line)
		if ok != tc.ok || got.Percent != tc.pct || got.Message != tc.line {
			t.Errorf("ParseProgress(%q) = %+v, %v; want percent %d, %v", tc.line, got, ok, tc.pct, tc.ok)
		}
	}
}

func FuzzParseProgress(f *testing.F) {
	f.Add("P01 DETAIL: restore file /d/base/1/1255 (768KB, 3.45%) checksum 0123")
	f.Add("P01 DETAIL: restore file /d (1B, 99999999999999999999999.5%)")
	f.Fuzz(func(t *testing.T, line string) {
		p, _ := ParseProgress(line)
		if p.Message != line {
			t.Fatalf("message %q, want the line %q", p.Message, line)
		}
		if p.Percent < replica.PercentUnknown || p.Percent > 100 {
			t.Fatalf("out of range: %+v", p)
		}
	})
}
