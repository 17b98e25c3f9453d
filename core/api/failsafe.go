package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// maxFailsafeBody bounds a POST /failsafe body (names, URLs and slots).
const maxFailsafeBody = 1 << 20

// postFailsafe is POST /failsafe: the primary's heartbeat while the DCS is
// down. A replica accepts it (200 "Accepted", its WAL position in the lsn
// header) and does not race for the leader key while it keeps coming; a
// running primary answers 500 "Running as a leader"; 502 unless failsafe
// mode is on.
func (s *Server) postFailsafe(w http.ResponseWriter, r *http.Request) {
	snap := s.snapshot(w, false)
	if snap == nil {
		return
	}
	if !snap.Dynamic.FailsafeMode {
		s.writeText(w, http.StatusBadGateway, "failsafe mode is not enabled")
		return
	}
	var body struct {
		Name string `json:"name"`
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxFailsafeBody))
	if err == nil {
		err = json.Unmarshal(data, &body)
	}
	if err != nil || body.Name == "" {
		s.writeText(w, http.StatusBadRequest, "a JSON body with the leader's name is required")
		return
	}
	st := snap.Status
	if st.IsRunning() && st.IsPrimary() {
		s.writeText(w, http.StatusInternalServerError, "Running as a leader")
		return
	}
	s.op.FailsafeHeartbeat(body.Name)
	if x := st.XLog; x != nil {
		w.Header().Set("lsn", strconv.FormatInt(max(x.Received(), x.Replayed()), 10))
	}
	s.writeText(w, http.StatusOK, "Accepted")
}
