package api

import (
	"net/http"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

// Answers of restart, reinitialize and reload (Patroni's texts).
const (
	msgRestarted             = "restarted successfully"
	msgRestartInitiated      = "restart initiated"
	msgRestartScheduled      = "Restart scheduled"
	msgRestartAlreadyPlanned = "Another restart is already scheduled"
	msgRestartPausedSchedule = "Can't schedule restart in the paused state"
	msgRestartFailed         = "restart failed"
	msgRestartBadRole        = "PostgreSQL role should be either primary, standby_leader, or replica"
	msgRestartBadTimeout     = "Timeout should be a positive number of seconds"
	msgRestartUnknownFilter  = "Unknown filter for the scheduled restart: "
	msgScheduledRestartGone  = "scheduled restart deleted"
	msgNoRestartScheduled    = "no restarts are scheduled"
	msgReinitializeStarted   = "reinitialize started"
	msgReloadScheduled       = "reload scheduled"
)

// postRestart is POST /restart: restart PostgreSQL now, answering when the
// restart has ended, or schedule it. The body's filters (role,
// postgres_version, restart_pending) are checked by the HA loop against
// the running server.
func (s *Server) postRestart(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r, true)
	if !ok {
		return
	}
	ctx := r.Context()
	if _, scheduled := body["schedule"]; scheduled && s.paused(r) {
		s.writeText(w, http.StatusInternalServerError, msgRestartPausedSchedule)
		return
	}
	req := ha.Request{Kind: ha.RequestRestart}
	// Patroni reports the first bad key in body order; sorted keys keep
	// the answer stable.
	for _, k := range sortedKeys(body) {
		v := body[k]
		switch k {
		case "schedule":
			at, code, problem := parseSchedule(v, "restart", s.now())
			if problem != "" {
				s.writeText(w, code, problem)
				return
			}
			req.Schedule = &at
		case "role":
			role, _ := v.(string)
			switch role {
			case cluster.RolePrimary, cluster.RoleMaster:
				// Patroni 3.0.2 accepts "master" (4.x does not); it is
				// the primary.
				req.Role = cluster.RolePrimary
			case cluster.RoleReplica, cluster.RoleStandbyLeader:
				req.Role = role
			default:
				s.writeText(w, http.StatusBadRequest, msgRestartBadRole)
				return
			}
		case "postgres_version":
			num, problem := postgresVersionNum(v)
			if problem != "" {
				s.writeText(w, http.StatusBadRequest, problem)
				return
			}
			req.PostgresVersion = num
		case "timeout":
			secs, valid := parseSeconds(v)
			if !valid || secs <= 0 {
				s.writeText(w, http.StatusBadRequest, msgRestartBadTimeout)
				return
			}
			req.Timeout = time.Duration(secs) * time.Second
		case "restart_pending":
			// Patroni filters on the key's presence; an explicit false
			// is taken at its word.
			if b, valid := parseBool(v); !valid || b {
				req.RestartPending = true
			}
		default:
			s.writeText(w, http.StatusBadRequest, msgRestartUnknownFilter+k)
			return
		}
	}
	s.logger.Info("received a restart request", "role", req.Role, "postgres_version", req.PostgresVersion,
		"restart_pending", req.RestartPending, "timeout", req.Timeout, "schedule", req.Schedule)

	if req.Schedule != nil {
		rep, err := s.requestReply(ctx, req)
		switch {
		case err != nil:
			s.writeText(w, http.StatusServiceUnavailable, "the HA loop did not take the request: "+err.Error())
		case rep.Status == ha.ReplyScheduled:
			s.writeText(w, http.StatusAccepted, msgRestartScheduled)
		case rep.Status == ha.ReplyConflict:
			s.writeText(w, http.StatusConflict, msgRestartAlreadyPlanned)
		default:
			// The loop refuses a schedule only while paused.
			s.writeText(w, http.StatusInternalServerError, rep.Message)
		}
		return
	}

	// The reply comes when the restart has ended (bounded by its timeout
	// in the HA loop); the server's WriteTimeout must not cut it off.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	rep, err := s.op.Request(ctx, req, true)
	switch {
	case err != nil:
		s.writeText(w, http.StatusServiceUnavailable, msgRestartFailed+": "+err.Error())
	case rep.Status == ha.ReplyDone:
		s.writeText(w, http.StatusOK, msgRestarted)
	case rep.Status == ha.ReplyStarted:
		s.writeText(w, http.StatusOK, msgRestartInitiated)
	default:
		// Refusals ("restart conditions are not satisfied: ...",
		// "restart failed: ...") and conflicts ("<action> already in
		// progress") carry Patroni's text first and the detail after it.
		s.writeText(w, http.StatusServiceUnavailable, rep.Message)
	}
}

// paused reports whether the cluster is paused, from a fresh DCS read or,
// when the DCS cannot be read, from the last snapshot.
func (s *Server) paused(r *http.Request) bool {
	if c, err := s.readCluster(r.Context()); err == nil {
		return s.dynamicOf(c).Pause
	}
	snap := s.src.Snapshot()
	return snap != nil && snap.Status.Pause
}

// deleteRestart is DELETE /restart: forget the scheduled restart.
func (s *Server) deleteRestart(w http.ResponseWriter, r *http.Request) {
	rep, err := s.requestReply(r.Context(), ha.Request{Kind: ha.RequestCancelRestart})
	switch {
	case err != nil:
		s.writeText(w, http.StatusServiceUnavailable, "the HA loop did not take the request: "+err.Error())
	case rep.Status == ha.ReplyDone:
		s.writeText(w, http.StatusOK, msgScheduledRestartGone)
	case rep.Status == ha.ReplyNotFound:
		s.writeText(w, http.StatusNotFound, msgNoRestartScheduled)
	default:
		s.writeText(w, http.StatusServiceUnavailable, rep.Message)
	}
}

// postReinitialize is POST /reinitialize: wipe the data directory and
// clone it again; force cancels a background action in progress.
func (s *Server) postReinitialize(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r, true)
	if !ok {
		return
	}
	force, _ := parseBool(body["force"])
	fromLeader, _ := parseBool(body["from_leader"])
	s.logger.Info("received a reinitialize request", "force", force, "from_leader", fromLeader)
	rep, err := s.requestReply(r.Context(), ha.Request{Kind: ha.RequestReinitialize, Force: force, FromLeader: fromLeader})
	switch {
	case err != nil:
		s.writeText(w, http.StatusServiceUnavailable, "the HA loop did not take the request: "+err.Error())
	case rep.Status == ha.ReplyStarted || rep.Status == ha.ReplyDone:
		s.writeText(w, http.StatusOK, msgReinitializeStarted)
	default:
		// "I am the leader, can not reinitialize", "Cluster has no
		// leader, can not reinitialize", "<action> already in progress".
		s.writeText(w, http.StatusServiceUnavailable, rep.Message)
	}
}

// postReload is POST /reload: re-read the configuration file, as SIGHUP.
func (s *Server) postReload(w http.ResponseWriter, _ *http.Request) {
	s.logger.Info("received a reload request")
	s.op.Reload()
	s.writeText(w, http.StatusAccepted, msgReloadScheduled)
}
