package postgres

import (
	"testing"
	"time"
)

// A standby that streamed a newer timeline keeps it after its walreceiver
// stops (its upstream went down), until the postmaster restarts.
func TestStreamedTimeline(t *testing.T) {
	var s streamedTimeline
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, step := range []struct {
		start    time.Time
		received int
		want     int
	}{
		{start, 0, 0},
		{start, 2, 2},
		{start, 3, 3},
		{start, 0, 3}, // the upstream stopped: the walreceiver is gone
		{start, 2, 3}, // streaming the old timeline's end again
		{start.Add(time.Second), 0, 0},
		{start.Add(time.Second), 4, 4},
	} {
		if got := s.note(step.start, step.received); got != step.want {
			t.Errorf("step %d: note(%v, %d) = %d, want %d", i, step.start, step.received, got, step.want)
		}
	}
}
