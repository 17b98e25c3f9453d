package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/ha"
	sdkdcs "github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Timing of switchovers and failovers requested over the API.
const (
	// peerStatusTimeout bounds each candidate's GET /patroni in the
	// is-failover-possible check (Patroni: 2 s, as in the leader race).
	peerStatusTimeout = 2 * time.Second
	// failoverPollInterval is how often the outcome of a switchover is read
	// from the DCS (Patroni: every second).
	failoverPollInterval = time.Second
	// minFailoverPollSeconds: a switchover is awaited for
	// 2*max(minFailoverPollSeconds, loop_wait) polls, long enough for a
	// graceful demote (checkpoint, fast stop) and a promotion.
	minFailoverPollSeconds = 10
	// dcsCallTimeout bounds one DCS read or write of a handler; the
	// agent's store bounds each call by retry_timeout already.
	dcsCallTimeout = 30 * time.Second
	// loopRequestTimeout bounds the wait for the HA loop's reply to a
	// request that starts nothing long (a schedule, a cancellation, a
	// reinitialize): the loop takes requests between cycles, and a cycle
	// lasts at most a few DCS calls of retry_timeout each.
	loopRequestTimeout = 30 * time.Second
)

// Manual failover kinds: the path and Patroni's words for it.
type failoverAction struct {
	name  string // "switchover", "failover"
	title string // "Switchover"
	verb  string // "switched", in "Successfully switched over"
}

var (
	actionSwitchover = failoverAction{name: "switchover", title: "Switchover", verb: "switched"}
	actionFailover   = failoverAction{name: "failover", title: "Failover", verb: "failed"}
)

// Answers of manual failovers (Patroni 4.x's texts).
const (
	msgFailoverNeedsCandidate = "Failover could be performed only to a specific candidate"
	msgSwitchoverNeedsLeader  = "Switchover could be performed only from a specific leader"
	msgFailoverNotScheduled   = "Failover can't be scheduled"
	msgPausedNeedsCandidate   = "Switchover is possible only to a specific candidate in a paused state"
	msgSameTarget             = "Switchover target and source are the same"
	msgFailoverWriteFailed    = "failed to write failover key into DCS"
	msgSwitchoverDeleted      = "scheduled switchover deleted"
	msgNoSwitchoverScheduled  = "no switchover is scheduled"
)

// postSwitchover is POST /switchover.
func (s *Server) postSwitchover(w http.ResponseWriter, r *http.Request) {
	s.manualFailover(w, r, actionSwitchover)
}

// postFailover is POST /failover.
func (s *Server) postFailover(w http.ResponseWriter, r *http.Request) {
	s.manualFailover(w, r, actionFailover)
}

// manualFailover is Patroni 4.x's do_POST_failover: validate, check that a
// member can take over, write /failover, then wait for the new leader
// (200 once a new leader holds the key, 503 if the old one kept it or the
// outcome is unknown; 202 for a scheduled switchover). A failover whose
// body names the leader, as patronictl 3.0.2 sends it, is a switchover.
func (s *Server) manualFailover(w http.ResponseWriter, r *http.Request, action failoverAction) {
	body, ok := s.readBody(w, r, false)
	if !ok {
		return
	}
	leader, err := stringField(body, "leader")
	if err != nil {
		s.writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	candidate, err := stringField(body, "candidate")
	if err != nil {
		s.writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	if candidate == "" {
		if candidate, err = stringField(body, "member"); err != nil {
			s.writeText(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	rawSchedule := body["scheduled_at"]
	if str, isString := rawSchedule.(string); isString && str == "" {
		rawSchedule = nil
	}
	s.logger.Info("received a manual "+action.name+" request", "leader", leader, "candidate", candidate, "scheduled_at", rawSchedule)

	ctx := r.Context()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	dyn := s.dynamicOf(c)

	status, msg := http.StatusBadRequest, ""
	switch {
	case action == actionFailover && candidate == "":
		msg = msgFailoverNeedsCandidate
	case action == actionSwitchover && leader == "":
		msg = msgSwitchoverNeedsLeader
	}
	var scheduledAt *time.Time
	if msg == "" && rawSchedule != nil {
		switch {
		case action == actionFailover:
			msg = msgFailoverNotScheduled
		case dyn.Pause:
			msg = "Can't schedule switchover in the paused state"
		default:
			at, code, problem := parseSchedule(rawSchedule, action.name, s.now())
			if problem != "" {
				status, msg = code, problem
			} else {
				scheduledAt = &at
			}
		}
	}
	if msg == "" && dyn.Pause && candidate == "" {
		msg = msgPausedNeedsCandidate
	}
	if action == actionFailover && leader != "" {
		s.logger.Warn("a failover request names the leader: performing a switchover instead", "leader", leader)
		action = actionSwitchover
	}
	if msg == "" && leader == candidate {
		msg = msgSameTarget
	}
	if msg == "" && scheduledAt == nil {
		if why := s.failoverPossible(ctx, c, dyn, leader, candidate, action); why != "" {
			status, msg = http.StatusPreconditionFailed, why
		}
	}
	if msg != "" {
		s.writeText(w, status, msg)
		return
	}

	f := cluster.Failover{Leader: leader, Candidate: candidate, ScheduledAt: scheduledAt}
	wctx, cancel := context.WithTimeout(ctx, dcsCallTimeout)
	err = s.op.WriteFailover(wctx, f, "")
	cancel()
	if err != nil {
		s.logger.Error("writing /failover", "error", err)
		s.writeText(w, http.StatusServiceUnavailable, msgFailoverWriteFailed)
		return
	}
	s.op.Wake()
	if scheduledAt != nil {
		s.writeText(w, http.StatusAccepted, action.title+" scheduled")
		return
	}
	status, msg = s.pollFailover(ctx, w, c.LeaderName(), candidate, action, int(dyn.LoopWait))
	s.writeText(w, status, msg)
}

// failoverPossible is the API's is_failover_possible: "" when some member
// could take over, else Patroni's reason. Unlike the leader race it does
// not look at lag: the member that takes over is decided by the HA loop.
func (s *Server) failoverPossible(ctx context.Context, c *cluster.Cluster, dyn config.Dynamic, leader, candidate string, action failoverAction) string {
	if leader != "" && c.LeaderName() != leader {
		return "leader name does not match"
	}
	syncMode := dyn.SynchronousMode != config.SyncOff && dyn.StandbyCluster == nil
	quorum := syncMode && dyn.SynchronousMode == config.SyncQuorum
	var members []cluster.Member
	switch {
	case candidate != "":
		if action == actionSwitchover && syncMode && !quorum && !c.IsSync(candidate) {
			return "candidate name does not match with sync_standby"
		}
		m := c.Member(candidate)
		if m == nil {
			return "candidate does not exists"
		}
		members = []cluster.Member{*m}
	case syncMode && !quorum:
		for _, m := range c.Members {
			if c.IsSync(m.Name) {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			return action.name + " is not possible: can not find sync_standby"
		}
	default:
		for _, m := range c.Members {
			if !c.IsLocked() || (m.Name != c.LeaderName() && m.APIURL != "") {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			return action.name + " is not possible: cluster does not have members except leader"
		}
	}
	if s.anyHealthy(ctx, members) {
		return ""
	}
	return action.name + " is not possible: no good candidates have been found"
}

// anyHealthy asks the members for their status at once and reports
// whether one could take over: it answered, runs, may fail over and has
// a working watchdog.
func (s *Server) anyHealthy(ctx context.Context, members []cluster.Member) bool {
	ctx, cancel := context.WithTimeout(ctx, s.peerTimeout)
	defer cancel()
	healthy := make(chan bool, len(members))
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.op.PeerStatus(ctx, m)
			if err != nil {
				s.logger.Debug("a switchover candidate did not answer", "member", m.Name, "error", err)
			}
			healthy <- err == nil && p.Healthy()
		}()
	}
	wg.Wait()
	close(healthy)
	for h := range healthy {
		if h {
			return true
		}
	}
	return false
}

// pollFailover waits for the outcome of a switchover as Patroni's
// poll_failover_result: up to 2*max(10, loop_wait) polls of the DCS, one
// per failoverPollInterval. A new leader is success; /failover emptied
// without one is failure.
func (s *Server) pollFailover(ctx context.Context, w http.ResponseWriter, oldLeader, candidate string, action failoverAction, loopWait int) (int, string) {
	rounds := 2 * max(minFailoverPollSeconds, loopWait)
	wait := time.Duration(rounds) * s.pollInterval
	// The answer comes after the wait; the server's WriteTimeout would cut
	// it off.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + WriteTimeout))
	ctx, cancel := context.WithTimeout(ctx, wait+dcsCallTimeout)
	defer cancel()
	tick := time.NewTicker(s.pollInterval)
	defer tick.Stop()
	for range rounds {
		select {
		case <-ctx.Done():
			return http.StatusServiceUnavailable, action.title + " status unknown"
		case <-tick.C:
		}
		c, err := s.op.ReadCluster(ctx)
		if err != nil {
			s.logger.Debug("reading the outcome of a "+action.name, "error", err)
			continue
		}
		if newLeader := c.LeaderName(); c.IsLocked() && newLeader != oldLeader {
			if candidate == "" || candidate == newLeader {
				return http.StatusOK, fmt.Sprintf("Successfully %s over to %q", action.verb, newLeader)
			}
			return http.StatusOK, fmt.Sprintf("%s over to %q instead of %q", capitalize(action.verb), newLeader, candidate)
		}
		if c.Failover == nil || c.Failover.IsEmpty() {
			return http.StatusServiceUnavailable, action.title + " failed"
		}
	}
	return http.StatusServiceUnavailable, action.title + " status unknown"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// deleteSwitchover is DELETE /switchover: a scheduled switchover is
// cancelled by writing {} over the version read.
func (s *Server) deleteSwitchover(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if c.Failover == nil || c.Failover.ScheduledAt == nil {
		s.writeText(w, http.StatusNotFound, msgNoSwitchoverScheduled)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, dcsCallTimeout)
	defer cancel()
	if err := s.op.WriteFailover(wctx, cluster.Failover{}, c.Failover.Version); err != nil {
		s.logger.Warn("deleting the scheduled switchover", "error", err)
		// Patroni answers 409 whatever stopped the write.
		msg := "Conflict: /failover changed since it was read"
		if !isConflict(err) {
			msg = "Conflict: " + err.Error()
		}
		s.writeText(w, http.StatusConflict, msg)
		return
	}
	s.logger.Info("scheduled switchover deleted")
	s.op.Wake()
	s.writeText(w, http.StatusOK, msgSwitchoverDeleted)
}

// readCluster reads the cluster from the DCS for a mutating request.
func (s *Server) readCluster(ctx context.Context) (*cluster.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, dcsCallTimeout)
	defer cancel()
	c, err := s.op.ReadCluster(ctx)
	if err != nil {
		return nil, fmt.Errorf("the DCS is not accessible: %w", err)
	}
	return c, nil
}

// isConflict reports whether a compare-and-set lost against another
// writer.
func isConflict(err error) bool {
	return errors.Is(err, sdkdcs.ErrVersionMismatch) || errors.Is(err, sdkdcs.ErrNotFound) || errors.Is(err, sdkdcs.ErrExists)
}

// dynamicOf is the dynamic configuration of a fresh DCS view, read as the
// HA loop reads it: a value /config gets wrong keeps the one the agent runs
// with (config.ParseDynamicOver), and so does an absent /config.
func (s *Server) dynamicOf(c *cluster.Cluster) config.Dynamic {
	inEffect := config.DefaultDynamic()
	if snap := s.src.Snapshot(); snap != nil {
		inEffect = snap.Dynamic
	}
	if c == nil || c.Config == nil {
		return inEffect
	}
	dyn, _ := config.ParseDynamicOver(c.Config.Data, inEffect)
	return dyn
}

// requestReply hands r to the HA loop; a loop that does not answer within
// loopRequestTimeout (or the client's own deadline) is an error.
func (s *Server) requestReply(ctx context.Context, r ha.Request) (ha.Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, loopRequestTimeout)
	defer cancel()
	return s.op.Request(ctx, r, false)
}
