package controller

import (
	"context"
	"sync"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

// Events receives PostgreSQL's lifecycle events for the callbacks
// (core/callbacks.Dispatcher in the agent). Emit must not block.
type Events interface {
	Emit(action, role string)
}

// Hooks runs the hook scripts that gate the HA path (core/callbacks in the
// agent).
type Hooks interface {
	// PrePromote runs before a promotion; an error cancels it.
	PrePromote(ctx context.Context) error
	// BeforeStop runs before PostgreSQL is stopped; its error is only
	// logged, and it never holds the stop past its timeout.
	BeforeStop(ctx context.Context) error
}

// Callback actions (Patroni's names).
const (
	onStart      = "on_start"
	onStop       = "on_stop"
	onRestart    = "on_restart"
	onReload     = "on_reload"
	onRoleChange = "on_role_change"
)

// Roles the callbacks are told.
const (
	rolePrimary = cluster.RolePrimary
	roleReplica = cluster.RoleReplica
	roleDemoted = cluster.RoleDemoted
)

// lifecycle turns what the controller does to PostgreSQL into callback
// events with Patroni's rules:
//   - a start sends on_start once the server runs (on_restart for a
//     restart), with the role it started in;
//   - a stop of a running server sends on_stop with the role it had; a
//     stopped primary's role is "demoted" from then on;
//   - a promotion sends on_role_change with role primary as soon as the
//     server was told to promote;
//   - a server that started as a replica while its role was primary or
//     demoted (a demotion, a former primary rejoining) sends
//     on_role_change with role replica instead of on_start, once the agent
//     has sent any start/stop/restart/role-change event before (Patroni's
//     cb_called); pointing a running replica at another member sends
//     on_reload, or on_restart when that needed a restart, except the
//     first upstream of such a role change that started with none;
//   - a reload of the configuration (and of synchronous_standby_names)
//     sends on_reload;
//   - the first time the agent finds the server running without having
//     sent an event, on_start with the role it runs in;
//   - nothing while bootstrapping; on_start with role primary once the new
//     cluster is up.
//
// Its methods may be called from the loop and from background actions.
type lifecycle struct {
	events Events
	mu     sync.Mutex
	role   string
	called bool
	// joining: the server changed role to a replica with no upstream yet
	// (a demoted primary that started before the new leader took the
	// key); the first upstream it is pointed at is part of that change.
	joining bool
}

func (l *lifecycle) emit(action, role string) {
	if l.events == nil {
		return
	}
	if action != onReload {
		l.called = true
	}
	l.events.Emit(action, role)
}

// startedAs is after a start (asPrimary, or as a replica following an
// upstream or none) succeeded; restart: it was a restart of a running
// server.
func (l *lifecycle) startedAs(asPrimary, upstream, restart bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	role := roleReplica
	if asPrimary {
		role = rolePrimary
	}
	change := l.called && !asPrimary && (l.role == rolePrimary || l.role == roleDemoted)
	l.role = role
	l.joining = change && !upstream
	switch {
	case change:
		l.emit(onRoleChange, role)
	case restart:
		l.emit(onRestart, role)
	default:
		l.emit(onStart, role)
	}
}

// followed is after a running server was pointed at another upstream;
// restarted: that needed a restart.
func (l *lifecycle) followed(restarted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	change := l.called && (l.role == rolePrimary || l.role == roleDemoted)
	l.role = roleReplica
	joining := l.joining
	l.joining = false
	switch {
	case joining:
		// Patroni starts a demoted primary once the new leader holds the
		// key, following it: one on_role_change for both steps.
	case change:
		l.emit(onRoleChange, roleReplica)
	case restarted:
		l.emit(onRestart, roleReplica)
	default:
		l.emit(onReload, roleReplica)
	}
}

// stopped is after a stop succeeded; wasRunning: the server ran before.
func (l *lifecycle) stopped(wasRunning bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !wasRunning {
		return
	}
	l.emit(onStop, l.role)
	if l.role == rolePrimary {
		l.role = roleDemoted
	}
}

// promoted is after the server was told to promote.
func (l *lifecycle) promoted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.role = rolePrimary
	l.emit(onRoleChange, rolePrimary)
}

// reloaded is after PostgreSQL was told to reload its configuration.
func (l *lifecycle) reloaded() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emit(onReload, l.roleOrReplica())
}

// bootstrapped is after a new cluster is up as a primary.
func (l *lifecycle) bootstrapped() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.role = rolePrimary
	l.emit(onStart, rolePrimary)
}

// failedToStartAsLeader is when the leader key is released because the
// primary did not start: its role is "demoted" (Patroni's post_recover).
func (l *lifecycle) failedToStartAsLeader() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.role == rolePrimary {
		l.role = roleDemoted
		l.emit(onRoleChange, roleDemoted)
	}
}

// observed takes in an observation made with no background action
// running: the first time the server is found running without any event
// sent, on_start with the role it runs in.
func (l *lifecycle) observed(pg ha.Postgres) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !pg.Running || !pg.Ready {
		return
	}
	if l.role == "" {
		l.role = rolePrimary
		if pg.InRecovery {
			l.role = roleReplica
		}
	}
	if !l.called {
		l.emit(onStart, l.role)
	}
}

func (l *lifecycle) roleOrReplica() string {
	if l.role == "" {
		return roleReplica
	}
	return l.role
}
