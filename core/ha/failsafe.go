package ha

import (
	"sort"
	"strings"

	"github.com/custos-ha/custos/core/cluster"
)

// failsafe runs a primary's cycle while the DCS is down in failsafe mode:
// it stays primary only while every other member listed in /failsafe
// acknowledges its POST /failsafe; otherwise it demotes (offline). trouble
// says what is wrong with the DCS, err is the error it gave.
func (d *decider) failsafe(trouble, err string) {
	if d.leaseRunOut() {
		// The acknowledgements must come before the stop margin of the
		// lease (the renewal's, or the last keep's): past it a member
		// that reaches the DCS may race before a POST /failsafe reached
		// it, and the stop must end before the key can expire. The
		// controller bounds the asking by that moment.
		d.add(Action{Kind: ActStop, Mode: StopImmediate})
		d.mem.Demoted = true
		d.say("demoting self: %s, and the /failsafe members did not all acknowledge me before the stop margin of the lease (key expiry %s)", trouble, d.in.LeaderExpiry.UTC().Format("15:04:05.000"))
		return
	}
	if !d.in.FailsafeChecked {
		d.gather.Failsafe, d.waiting = true, true
		d.say("DCS is not accessible (%s): asking the /failsafe members", err)
		return
	}
	var missing []string
	for name := range d.in.LastFailsafe {
		if name != d.in.Name && !d.in.FailsafeAcks[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		d.add(Action{Kind: ActStop, Mode: d.demoteMode()})
		d.mem.Demoted = true
		d.say("demoting self: %s and %s did not acknowledge failsafe mode", trouble, strings.Join(missing, ", "))
		return
	}
	if why := d.watchdogBlocks(); why != "" && !d.in.Watchdog.Armed {
		d.add(Action{Kind: ActStop, Mode: d.demoteMode()})
		d.mem.Demoted = true
		d.say("demoting self: %s, and failsafe mode cannot keep a primary without it", why)
		return
	}
	// The members that acknowledged do not race for ttl after they
	// received the POST: the controller counts a new lease from when it
	// began asking, and must ask again before its stop margin. The
	// watchdog guards that lease as it guards a renewed one.
	d.add(d.arm()...)
	d.mem.FailsafeKept, d.failsafeKept = d.in.Now, true
	// Ask again before the next decision, should the DCS stay away (once
	// more when it is back: cheap, and the members answer at once).
	d.gather.Failsafe = true
	d.say("DCS is not accessible (%s): failsafe mode active, every /failsafe member acknowledged me as the primary", err)
}

// failsafeMembers is the /failsafe value the leader keeps: every member
// with an api_url, the leader included.
func (d *decider) failsafeMembers() cluster.Failsafe {
	f := cluster.Failsafe{}
	for _, m := range d.c.Members {
		if m.APIURL != "" {
			f[m.Name] = m.APIURL
		}
	}
	return f
}
