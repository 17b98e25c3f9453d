package ha

import "fmt"

// Watchdog is the state of this member's watchdog (core/watchdog): the
// Linux device or the fencing process that stops PostgreSQL when the agent
// stops feeding it. A leader's watchdog is armed before it promotes or
// keeps a primary and fed on every renewal of the leader key; it is
// disarmed when the member stops being a primary with the key, and while
// paused.
type Watchdog struct {
	// Required: [watchdog] mode = "required": without a working watchdog
	// this member never takes or keeps the leader key.
	Required bool
	// Available: it can be armed (the device or the fencing process
	// works); false with mode off.
	Available bool
	// Armed: it is armed now.
	Armed bool
	// Problem says why it is not available (or why arming it failed).
	Problem string
}

// watchdogBlocks says why this member may not take or keep the leader key
// for want of a watchdog; "" when it may.
func (d *decider) watchdogBlocks() string {
	w := d.in.Watchdog
	if !w.Required || w.Available || d.in.Config.Paused {
		return ""
	}
	if w.Problem == "" {
		return "the watchdog is required but not usable"
	}
	return fmt.Sprintf("the watchdog is required but not usable: %s", w.Problem)
}

// arm arms the watchdog before a promotion or a start as primary, or for a
// primary that keeps the key, when it can be armed and is not yet.
func (d *decider) arm() []Action {
	w := d.in.Watchdog
	if !w.Available || w.Armed || d.in.Config.Paused {
		return nil
	}
	return []Action{{Kind: ActArmWatchdog}}
}

// disarm ends the decision with disarming an armed watchdog unless the
// decision keeps this member a primary holding the leader key.
func (d *decider) disarm() {
	if d.in.Watchdog.Armed && !d.keepsPrimary() {
		d.add(Action{Kind: ActDisarmWatchdog})
	}
}

// keepsPrimary: after the decision, this member runs (or becomes) a
// primary with the leader key, so its watchdog stays armed. Paused, the
// watchdog is off as in Patroni.
func (d *decider) keepsPrimary() bool {
	if d.in.Config.Paused {
		return false
	}
	acquires := false
	for _, a := range d.actions {
		switch a.Kind {
		case ActStop, ActDemote, ActReleaseLeader:
			return false
		case ActPromote:
			return true
		case ActStart, ActRestart:
			if a.AsPrimary {
				return true
			}
		case ActAcquireLeader:
			acquires = true
		}
	}
	if d.c != nil && !d.held() && !acquires {
		return false
	}
	if b := d.in.Busy; b != nil {
		switch b.Kind {
		case ActPromote, ActRestart, ActBootstrap, ActStart:
			// Becoming (or staying) the leader's primary: a start in
			// progress under the key is one as primary, or one a
			// promotion follows.
			return true
		}
	}
	// A server that does not answer (starting, hung) may be the primary.
	return d.pg.MayBePrimary()
}
