package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestPatroniReportsLivePositions(t *testing.T) {
	for _, tc := range []struct {
		name string
		snap *Snapshot
		pos  Positions
		want func(Status) bool
	}{
		{"primary", primarySnapshot(t), Positions{Location: 999999},
			func(s Status) bool { return s.XLog.PrimaryLocation() == 999999 }},
		{"replica", replicaSnapshot(t), Positions{InRecovery: true, Received: 777, Replayed: 666},
			func(s Status) bool { return s.XLog.Received() == 777 && s.XLog.Replayed() == 666 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(ServerConfig{}, fixedSource{tc.snap}, nil, WithLivePositions(func(context.Context) (Positions, error) { return tc.pos, nil }))
			s.now = newTestServer(tc.snap, ServerConfig{}).now
			rec := get(t, s, "/patroni")
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /patroni = %d", rec.Code)
			}
			var st Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatal(err)
			}
			if !tc.want(st) {
				t.Fatalf("positions not live: %s", rec.Body)
			}
		})
	}
	// A failing query, or a role that changed since the snapshot, serves the
	// snapshot as it is.
	snap := primarySnapshot(t)
	want := snap.Status.XLog.PrimaryLocation()
	for _, f := range []func(context.Context) (Positions, error){
		func(context.Context) (Positions, error) { return Positions{}, errors.New("down") },
		func(context.Context) (Positions, error) { return Positions{InRecovery: true, Received: 1}, nil },
	} {
		s := New(ServerConfig{}, fixedSource{snap}, nil, WithLivePositions(f))
		var st Status
		if err := json.Unmarshal(get(t, s, "/patroni").Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		if st.XLog.PrimaryLocation() != want {
			t.Fatalf("fallback changed the position to %d", st.XLog.PrimaryLocation())
		}
	}
}

// A live read that hangs does not hang GET /patroni: past its bound the
// answer comes from the snapshot.
func TestPatroniDoesNotWaitForAHangingRead(t *testing.T) {
	snap := primarySnapshot(t)
	s := New(ServerConfig{}, fixedSource{snap}, nil, WithLivePositions(func(ctx context.Context) (Positions, error) {
		<-ctx.Done() // a PostgreSQL that does not answer
		return Positions{}, ctx.Err()
	}))
	rec := get(t, s, "/patroni")
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || st.XLog.PrimaryLocation() != snap.Status.XLog.PrimaryLocation() {
		t.Fatalf("GET /patroni with a hanging read = %d %s", rec.Code, rec.Body)
	}
}

func TestPatroniWithoutPositionsOnceThePostmasterIsGone(t *testing.T) {
	s := New(ServerConfig{}, fixedSource{primarySnapshot(t)}, nil, WithLivePositions(func(context.Context) (Positions, error) {
		return Positions{}, fmt.Errorf("reading positions: %w", ErrNotRunning)
	}))
	rec := get(t, s, "/patroni")
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || st.XLog != nil || st.State != "unknown" || st.Role != "primary" {
		t.Fatalf("GET /patroni with the postmaster gone = %d %s", rec.Code, rec.Body)
	}
}
