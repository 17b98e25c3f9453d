package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/servers"
)

// scenario is one fault.
type scenario struct {
	name  string
	about string
	// noWatchdog runs the cluster without the process watchdog: the
	// figures of a fault the watchdog is there for, without it. Its
	// dual-primary windows are measured, not failures.
	noWatchdog bool
	// short puts the scenario in the short form (make test).
	short bool
	// named runs the scenario only when it is asked for by name (a long
	// one).
	named bool
	// keepsLeader makes a leader change or a write outage a failure: the
	// fault must not cost the primary its leadership.
	keepsLeader bool
	// fault injects the fault into r's cluster, holds it and heals it; it
	// returns when it was healed (zero: at return).
	fault func(ctx context.Context, r *run) (healed time.Time, err error)
}

// scenarios in the order the suite runs them.
var scenarios = []scenario{
	{
		name:  "kill-node",
		about: "SIGKILL of the primary's node: agent, plugins, fencing process, postmaster and backends; restarted once another member took over",
		short: true,
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			old := r.leader
			at := time.Now()
			if err := killNode(old); err != nil {
				return time.Time{}, err
			}
			r.waitTakeover(ctx, old, at, takeoverLimit)
			hold(ctx, takeoverHold)
			return time.Now(), old.Start()
		},
	},
	{
		name:  "primary-cut-from-dcs",
		about: "the primary's links to every etcd member stall (packets dropped, connections left open); restored once another member took over",
		short: true,
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			old := r.leader
			links := r.c.proxies(old.Name)
			at := time.Now()
			for _, p := range links {
				p.Stall()
			}
			r.waitTakeover(ctx, old, at, takeoverLimit)
			hold(ctx, takeoverHold)
			for _, p := range links {
				p.Resume()
			}
			return time.Now(), nil
		},
	},
	{
		name:  "sigstop-agent",
		about: "SIGSTOP of the primary's agent (PostgreSQL, plugins and the process watchdog run on); SIGCONT once another member took over",
		short: true,
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			return freezeAgent(ctx, r)
		},
	},
	{
		name:       "sigstop-agent-no-watchdog",
		about:      "as sigstop-agent, with [watchdog] mode off: nothing stops the frozen primary's PostgreSQL",
		noWatchdog: true,
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			return freezeAgent(ctx, r)
		},
	},
	{
		name:  "kill-postmaster",
		about: "SIGKILL of the primary's postmaster and backends; the agent runs on",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			pm := r.leader.PostmasterPID()
			if pm == 0 {
				return time.Time{}, fmt.Errorf("%s: no postmaster", r.leader.Name)
			}
			pids := descendants(pm)
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			r.note("killed %s's postmaster and %d children", r.leader.Name, len(pids)-1)
			return time.Now(), nil
		},
	},
	{
		name:  "sigstop-etcd-leader",
		about: "SIGSTOP of the etcd member that leads etcd for 15 s (the other two elect a new etcd leader)",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			return freezeEtcd(ctx, r, 1, 15*time.Second)
		},
	},
	{
		name:  "sigstop-etcd-majority",
		about: "SIGSTOP of two etcd members (the leader among them) for 25 s: the DCS has no quorum",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			return freezeEtcd(ctx, r, 2, 25*time.Second)
		},
	},
	{
		name:  "slow-dcs",
		about: "every member's links to etcd get 300 ms of latency each way for 20 s",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			links := r.c.proxies()
			for _, p := range links {
				p.SetLatency(300 * time.Millisecond)
			}
			hold(ctx, 20*time.Second)
			for _, p := range links {
				p.SetLatency(0)
			}
			return time.Now(), nil
		},
	},
	{
		name:  "dcs-stalls",
		about: "every member's links to etcd stall for 3 s, then flow for 3 s, four times",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			links := r.c.proxies()
			for range 4 {
				for _, p := range links {
					p.Stall()
				}
				hold(ctx, 3*time.Second)
				for _, p := range links {
					p.Resume()
				}
				hold(ctx, 3*time.Second)
			}
			return time.Now(), nil
		},
	},
	{
		name:  "switchover-etcd-leader-frozen",
		about: "a switchover to the synchronous standby requested (and repeated until accepted) right after SIGSTOP of the etcd leader; thawed once the candidate took over (or after 30 s)",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			i := r.c.etcd.Leader(ctx, 2*time.Second)
			if i < 0 {
				return time.Time{}, errors.New("no etcd member says it leads")
			}
			e := r.c.etcd.Members[i]
			if err := e.Freeze(); err != nil {
				return time.Time{}, err
			}
			at := time.Now()
			defer func() { _ = e.Thaw() }()
			requestSwitchover(ctx, r, at)
			r.waitTakeover(ctx, r.leader, at, takeoverLimit)
			hold(ctx, takeoverHold)
			return time.Now(), e.Thaw()
		},
	},
	{
		name:  "replica-cut-from-primary",
		about: "the links between the primary and its synchronous standby stall for 20 s (replication, API calls), both keep the DCS",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			standby, err := syncStandby(ctx, r.leader)
			if err != nil {
				return time.Time{}, err
			}
			r.note("cut %s from %s", standby, r.leader.Name)
			r.c.cut(r.leader.Name, standby)
			hold(ctx, 20*time.Second)
			r.c.mend(r.leader.Name, standby)
			return time.Now(), nil
		},
	},
	{
		name:  "members-cut-from-each-other",
		about: "every link between members stalls for 20 s (replication, API calls); every member keeps the DCS",
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			ms := r.c.h.Members
			for i, a := range ms {
				for _, b := range ms[i+1:] {
					r.c.cut(a.Name, b.Name)
				}
			}
			at := time.Now()
			hold(ctx, 20*time.Second)
			if name, ok := r.s.otherWritableSince(r.leader.Name, at); ok {
				r.note("%s took writes while the members were cut from each other", name)
			}
			for i, a := range ms {
				for _, b := range ms[i+1:] {
					r.c.mend(a.Name, b.Name)
				}
			}
			return time.Now(), nil
		},
	},
	{
		name:        "dcs-plugin-kills",
		about:       "SIGKILL of the primary's DCS plugin process every 3 s for 60 s: a plugin crash alone must cost no leadership",
		keepsLeader: true,
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			return killPluginEvery(ctx, r, 3*time.Second, time.Minute)
		},
	},
	{
		name:        "dcs-plugin-kills-10min",
		about:       "SIGKILL of the primary's DCS plugin process every 5 s for 10 minutes (run only when named)",
		named:       true,
		keepsLeader: true,
		fault: func(ctx context.Context, r *run) (time.Time, error) {
			return killPluginEvery(ctx, r, 5*time.Second, 10*time.Minute)
		},
	},
}

// killPluginEvery SIGKILLs the leader's DCS plugin process every period
// for d (the agent restarts it).
func killPluginEvery(ctx context.Context, r *run, period, d time.Duration) (time.Time, error) {
	end := time.Now().Add(d)
	kills := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		if pid := pluginPID(r.leader.PID(), "dcs-etcd3"); pid != 0 {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				kills++
			}
		}
		hold(ctx, period)
	}
	r.note("killed %s's DCS plugin %d times", r.leader.Name, kills)
	return time.Now(), nil
}

// requestSwitchover asks the leader's API for a switchover to its
// synchronous standby, again every second, as an operator would, until it
// is accepted or takeoverLimit after since.
func requestSwitchover(ctx context.Context, r *run, since time.Time) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		// The synchronous standby may change during the fault.
		candidate, err := syncStandby(ctx, r.leader)
		if err == nil {
			err = switchover(ctx, r.leader, candidate)
		}
		if err == nil {
			r.note("switchover %s -> %s accepted at attempt %d, %v after the fault", r.leader.Name, candidate, attempt, time.Since(since).Round(time.Millisecond))
			return
		}
		late := time.Since(since) > takeoverLimit
		if attempt == 1 || late {
			r.note("switchover from %s, attempt %d: %v", r.leader.Name, attempt, err)
		}
		if late {
			return
		}
		hold(ctx, time.Second)
	}
}

// withSwitchover is sc with a switchover to the synchronous standby
// requested switchoverAfter into its fault and repeated until accepted:
// the operator's move during a fault.
func withSwitchover(sc scenario) scenario {
	fault := sc.fault
	sc.name += "+switchover"
	sc.about += fmt.Sprintf("; %v into the fault a switchover to the synchronous standby is requested, repeated until accepted", switchoverAfter)
	sc.short = false
	sc.fault = func(ctx context.Context, r *run) (time.Time, error) {
		at := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			hold(ctx, switchoverAfter)
			requestSwitchover(ctx, r, at)
		}()
		healed, err := fault(ctx, r)
		<-done
		return healed, err
	}
	return sc
}

// switchoverAfter is when withSwitchover's request comes.
const switchoverAfter = 2 * time.Second

func init() {
	// A switchover during each fault that leaves the primary in place for
	// a while.
	for _, name := range []string{"kill-postmaster", "slow-dcs", "dcs-stalls", "replica-cut-from-primary", "members-cut-from-each-other"} {
		for _, sc := range scenarios {
			if sc.name == name {
				scenarios = append(scenarios, withSwitchover(sc))
			}
		}
	}
}

// freezeAgent stops the primary's agent process (not its plugins or its
// fencing process, not PostgreSQL) until another member took over.
func freezeAgent(ctx context.Context, r *run) (time.Time, error) {
	old := r.leader
	at := time.Now()
	if err := old.Signal(syscall.SIGSTOP); err != nil {
		return time.Time{}, err
	}
	r.waitTakeover(ctx, old, at, takeoverLimit)
	hold(ctx, takeoverHold)
	return time.Now(), old.Signal(syscall.SIGCONT)
}

// freezeEtcd stops n etcd members, the etcd leader first, for d.
func freezeEtcd(ctx context.Context, r *run, n int, d time.Duration) (time.Time, error) {
	lead := r.c.etcd.Leader(ctx, 2*time.Second)
	if lead < 0 {
		return time.Time{}, errors.New("no etcd member says it leads")
	}
	var frozen []*servers.Etcd
	thaw := func() error {
		var errs []error
		for _, e := range frozen {
			errs = append(errs, e.Thaw())
		}
		return errors.Join(errs...)
	}
	for k := 0; len(frozen) < n && k < len(r.c.etcd.Members); k++ {
		e := r.c.etcd.Members[(lead+k)%len(r.c.etcd.Members)]
		if err := e.Freeze(); err != nil {
			return time.Time{}, errors.Join(err, thaw())
		}
		frozen = append(frozen, e)
	}
	at := time.Now()
	hold(ctx, d)
	if name, ok := r.s.otherWritableSince(r.leader.Name, at); ok {
		r.note("%s took writes while etcd was frozen", name)
	}
	return time.Now(), thaw()
}

// switchover asks leader's REST API for a switchover to candidate, as
// patronictl does.
func switchover(ctx context.Context, leader *tkcluster.Member, candidate string) error {
	body, _ := json.Marshal(map[string]string{"leader": leader.Name, "candidate": candidate})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, leader.APIURL("/switchover"), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /switchover: %d %s", resp.StatusCode, bytes.TrimSpace(out))
	}
	return nil
}
