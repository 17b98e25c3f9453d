package plugins

import (
	"testing"
	"time"
)

func TestRestartPolicy(t *testing.T) {
	const (
		lo     = 100 * time.Millisecond
		hi     = time.Second
		stable = time.Second
	)
	type step struct {
		// uptime of a process that exited; negative: a start that failed.
		uptime time.Duration
		wait   time.Duration
	}
	failedStart := time.Duration(-1)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a process that ran fine is replaced at once, every time", []step{
			{stable, 0}, {time.Hour, 0}, {3 * time.Second, 0},
		}},
		{"deaths of young processes back off up to the cap", []step{
			{0, lo}, {10 * time.Millisecond, 2 * lo}, {500 * time.Millisecond, 4 * lo}, {stable - 1, 8 * lo}, {0, hi}, {0, hi},
		}},
		{"failed starts back off up to the cap", []step{
			{2 * stable, 0}, {failedStart, lo}, {failedStart, 2 * lo}, {failedStart, 4 * lo}, {failedStart, 8 * lo}, {failedStart, hi}, {failedStart, hi},
		}},
		{"a process that ran fine ends a crash loop", []step{
			{0, lo}, {failedStart, 2 * lo}, {failedStart, 4 * lo}, {stable, 0}, {0, lo}, {failedStart, 2 * lo},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := restartPolicy{min: lo, max: hi, stable: stable}
			for i, s := range tc.steps {
				var got time.Duration
				if s.uptime < 0 {
					got = p.failed()
				} else {
					got = p.exited(s.uptime)
				}
				if got != s.wait {
					t.Fatalf("step %d (uptime %v): wait %v, want %v", i, s.uptime, got, s.wait)
				}
			}
		})
	}
}
