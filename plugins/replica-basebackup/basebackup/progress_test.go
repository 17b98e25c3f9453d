package basebackup

import (
	"testing"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

func TestParseProgress(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		want replica.Progress
	}{
		{"    0/22879 kB (0%), 0/1 tablespace (...ata/base/1/1255)", true,
			replica.Progress{Percent: 0, DoneBytes: 0, TotalBytes: 22879 * 1024}},
		{"22879/22879 kB (100%), 1/1 tablespace", true,
			replica.Progress{Percent: 100, DoneBytes: 22879 * 1024, TotalBytes: 22879 * 1024}},
		{"1200/4000 kB (30%), 1/2 tablespaces (/ts/PG_15_202209061/16384/1)", true,
			replica.Progress{Percent: 30, DoneBytes: 1200 * 1024, TotalBytes: 4000 * 1024}},
		// --no-estimate-size: no total, no percent.
		{"  512/0 kB (0%), 0/1 tablespace", true,
			replica.Progress{Percent: replica.PercentUnknown, DoneBytes: 512 * 1024}},
		{"pg_basebackup: checkpoint completed", false, replica.Progress{Percent: replica.PercentUnknown}},
		{`pg_basebackup: error: connection to server at "127.0.0.1", port 1 failed: Connection refused`, false,
			replica.Progress{Percent: replica.PercentUnknown}},
		{"", false, replica.Progress{Percent: replica.PercentUnknown}},
	} {
		got, ok := ParseProgress(tc.line)
		tc.want.Message = tc.line
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseProgress(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseProgress(f *testing.F) {
	f.Add("22879/22879 kB (100%), 1/1 tablespace")
	f.Add("99999999999999999999/1 kB (5%)")
	f.Fuzz(func(t *testing.T, line string) {
		p, _ := ParseProgress(line)
		if p.Message != line {
			t.Fatalf("message %q, want the line %q", p.Message, line)
		}
		if p.Percent < replica.PercentUnknown || p.Percent > 100 || p.DoneBytes < 0 || p.TotalBytes < 0 {
			t.Fatalf("out of range: %+v", p)
		}
	})
}
