package controller

import (
	"slices"
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/ha"
)

type recorder struct{ calls []string }

func (r *recorder) Emit(action, role string) { r.calls = append(r.calls, action+" "+role) }

// TestLifecycleSequences: the callback events of a member's role history
// follow Patroni's rules.
func TestLifecycleSequences(t *testing.T) {
	running := func(recovery bool) ha.Postgres {
		return ha.Postgres{Running: true, Ready: true, InRecovery: recovery}
	}
	for _, tc := range []struct {
		name string
		run  func(l *lifecycle)
		want []string
	}{{
		name: "bootstrap, then a switchover away and back",
		run: func(l *lifecycle) {
			l.bootstrapped()
			l.observed(running(false))
			l.stopped(true) // the switchover's demote
			l.startedAs(false, true, false)
			l.observed(running(true))
			l.promoted()
		},
		want: []string{"on_start primary", "on_stop primary", "on_role_change replica", "on_role_change primary"},
	}, {
		name: "a replica found running, a new leader, a restart, a reload",
		run: func(l *lifecycle) {
			l.observed(running(true))
			l.followed(false)
			l.startedAs(false, true, true)
			l.reloaded()
			l.followed(true)
		},
		want: []string{"on_start replica", "on_reload replica", "on_restart replica", "on_reload replica", "on_restart replica"},
	}, {
		name: "a fresh agent on a crashed primary's data rejoins",
		run: func(l *lifecycle) {
			l.startedAs(false, true, false)
			l.observed(running(true))
		},
		want: []string{"on_start replica"},
	}, {
		name: "a primary restarted after a crash, then failing to start",
		run: func(l *lifecycle) {
			l.startedAs(true, false, false)
			l.failedToStartAsLeader()
			l.startedAs(false, true, false)
		},
		want: []string{"on_start primary", "on_role_change demoted", "on_role_change replica"},
	}, {
		name: "a demoted primary started before the new leader took the key",
		run: func(l *lifecycle) {
			l.observed(running(false))
			l.stopped(true)
			l.startedAs(false, false, false)
			l.followed(false)
			l.followed(false)
		},
		want: []string{"on_start primary", "on_stop primary", "on_role_change replica", "on_reload replica"},
	}, {
		name: "a stop of a server that was not running sends nothing",
		run: func(l *lifecycle) {
			l.stopped(false)
		},
		want: nil,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			l := &lifecycle{events: r}
			tc.run(l)
			if !slices.Equal(r.calls, tc.want) {
				t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(r.calls, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}
