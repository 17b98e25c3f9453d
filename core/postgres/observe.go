package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// observeTimeout bounds one Observe when the caller's context has no
// earlier deadline: every query is a catalog read that takes milliseconds,
// so a slower answer means the server is in trouble and the HA loop must
// not wait on it.
const observeTimeout = 5 * time.Second

// Observation is what the local server says about itself, read without
// side effects.
type Observation struct {
	InRecovery bool
	// Timeline is the current timeline: on a primary the one it writes,
	// on a standby the newest one its walreceiver streamed since the
	// postmaster started (the startup process had switched to it), else
	// the newer of the timelines of its minimum recovery point and its
	// last restartpoint.
	Timeline int
	// CheckpointTimeline is pg_control_checkpoint().timeline_id.
	CheckpointTimeline int
	// WALLSN is pg_current_wal_lsn() on a primary (0 on a standby).
	WALLSN LSN
	// ReceivedLSN and ReplayedLSN are pg_last_wal_receive_lsn() and
	// pg_last_wal_replay_lsn() on a standby (0 when unknown).
	ReceivedLSN  LSN
	ReplayedLSN  LSN
	ReplayPaused bool
	// ReplayedTimestamp is pg_last_xact_replay_timestamp(); nil when
	// nothing was replayed.
	ReplayedTimestamp *time.Time
	// ServerVersion is server_version_num (150004).
	ServerVersion       int
	PostmasterStartTime time.Time
	// WALReceiver is the walreceiver of a standby; nil when there is none.
	WALReceiver *WALReceiver
	// Replication lists pg_stat_replication.
	Replication []ReplicationClient
	// PendingRestart lists settings changed in the configuration that need
	// a restart.
	PendingRestart []PendingSetting
	// Slots lists pg_replication_slots.
	Slots []Slot
	// SyncStandbyNames is the running synchronous_standby_names.
	SyncStandbyNames string
	// confLoaded is pg_conf_load_time() of the agent's session.
	confLoaded time.Time
}

// Streaming reports whether a standby's walreceiver is streaming.
func (o Observation) Streaming() bool {
	return o.WALReceiver != nil && o.WALReceiver.Status == "streaming"
}

// WALReceiver is the row of pg_stat_wal_receiver.
type WALReceiver struct {
	PID              int
	Status           string
	ReceivedTimeline int
	FlushedLSN       LSN
	LatestEndLSN     LSN
	SlotName         string
	SenderHost       string
	SenderPort       int
}

// ReplicationClient is a row of pg_stat_replication.
type ReplicationClient struct {
	PID             int
	Usename         string
	ApplicationName string
	ClientAddr      string
	State           string
	SentLSN         LSN
	WriteLSN        LSN
	FlushLSN        LSN
	ReplayLSN       LSN
	SyncPriority    int
	SyncState       string
}

// PendingSetting is a setting whose new value waits for a restart.
type PendingSetting struct {
	Name string
	// Old is the running value as pg_settings shows it (in Unit); New is
	// the value in the configuration files when known.
	Old  string
	Unit string
	New  string
}

// Slot is a row of pg_replication_slots.
type Slot struct {
	Name              string
	Type              string // physical or logical
	Plugin            string
	Database          string
	Temporary         bool
	Active            bool
	RestartLSN        LSN
	ConfirmedFlushLSN LSN
}

const observeStateSQL = `
SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  CASE WHEN pg_is_in_recovery() THEN NULL
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  pg_last_wal_receive_lsn()::text,
  pg_last_wal_replay_lsn()::text,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
  pg_last_xact_replay_timestamp(),
  current_setting('server_version_num')::int,
  pg_postmaster_start_time(),
  (SELECT timeline_id FROM pg_control_checkpoint()),
  (SELECT min_recovery_end_timeline FROM pg_control_recovery()),
  current_setting('synchronous_standby_names'),
  pg_conf_load_time()`

const observeReceiverSQL = `
SELECT pid, status, COALESCE(received_tli, 0), flushed_lsn::text, latest_end_lsn::text,
  COALESCE(slot_name, ''), COALESCE(sender_host, ''), COALESCE(sender_port, 0)
FROM pg_stat_wal_receiver`

const observeReplicationSQL = `
SELECT pid, COALESCE(usename::text, ''), COALESCE(application_name, ''),
  COALESCE(host(client_addr), ''), COALESCE(state, ''),
  sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
  COALESCE(sync_priority, 0), COALESCE(sync_state, '')
FROM pg_stat_replication ORDER BY application_name, pid`

// The newest line of the configuration files for each setting is the
// value the next restart applies.
const observePendingSQL = `
SELECT s.name, COALESCE(s.setting, ''), COALESCE(s.unit, ''), COALESCE(f.setting, '')
FROM pg_settings s
LEFT JOIN (SELECT DISTINCT ON (name) name, setting FROM pg_file_settings
           ORDER BY name, seqno DESC) f ON f.name = s.name
WHERE s.pending_restart ORDER BY s.name`

const observeSlotsSQL = `
SELECT slot_name::text, slot_type, COALESCE(plugin::text, ''), COALESCE(database::text, ''),
  temporary, active, restart_lsn::text, confirmed_flush_lsn::text
FROM pg_replication_slots ORDER BY slot_name`

// Observe reads the state of the local server in one round trip: the
// queries go out together as one pipelined batch. The pending-restart
// settings are read again only when the server (re)loaded its
// configuration since the last read (pg_conf_load_time moved, or another
// postmaster runs): listing them scans pg_settings and parses the
// configuration files, which was most of what an idle server spent on the
// agent. Errors come back as errors (the server is down, still starting, or
// too slow); nothing is changed on the server.
func (p *Postgres) Observe(ctx context.Context) (Observation, error) {
	ctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	var o Observation
	err := p.withConnRetry(ctx, func(c *pgx.Conn) error {
		o = Observation{}
		b := &pgx.Batch{}
		b.Queue(observeStateSQL)
		b.Queue(observeReceiverSQL)
		b.Queue(observeReplicationSQL)
		b.Queue(observeSlotsSQL)
		br := c.SendBatch(ctx, b)
		err := o.scanBatch(br, &p.streamed)
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("observing postgres: %w", cerr)
		}
		if err != nil {
			return err
		}
		o.PendingRestart, err = p.pending.read(ctx, c, o.PostmasterStartTime, o.confLoaded)
		return err
	})
	if err != nil {
		return Observation{}, fmt.Errorf("observing postgres: %w", err)
	}
	return o, nil
}

// scanBatch reads the answers of Observe's batch, in order.
func (o *Observation) scanBatch(br pgx.BatchResults, streamed *streamedTimeline) error {
	var wal, recv, replay *string
	var tl *int32
	var replayTS *time.Time
	var ckptTL, minRecTL int32
	if err := br.QueryRow().Scan(&o.InRecovery, &wal, &tl, &recv, &replay,
		&o.ReplayPaused, &replayTS, &o.ServerVersion, &o.PostmasterStartTime, &ckptTL, &minRecTL,
		&o.SyncStandbyNames, &o.confLoaded); err != nil {
		return fmt.Errorf("reading server state: %w", err)
	}
	o.CheckpointTimeline = int(ckptTL)
	o.ReplayedTimestamp = replayTS
	var err error
	if o.WALLSN, err = optLSN(wal); err != nil {
		return err
	}
	if o.ReceivedLSN, err = optLSN(recv); err != nil {
		return err
	}
	if o.ReplayedLSN, err = optLSN(replay); err != nil {
		return err
	}
	if tl != nil {
		o.Timeline = int(*tl)
	} else {
		// A standby replays at least up to its minimum recovery point,
		// which may already be on a newer timeline than its last
		// restartpoint (after pg_rewind, say).
		o.Timeline = max(o.CheckpointTimeline, int(minRecTL))
	}

	rows, _ := br.Query()
	recvs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WALReceiver, error) {
		var w WALReceiver
		var flushed, latest *string
		if err := r.Scan(&w.PID, &w.Status, &w.ReceivedTimeline, &flushed, &latest, &w.SlotName, &w.SenderHost, &w.SenderPort); err != nil {
			return w, err
		}
		var err error
		if w.FlushedLSN, err = optLSN(flushed); err != nil {
			return w, err
		}
		w.LatestEndLSN, err = optLSN(latest)
		return w, err
	})
	if err != nil {
		return fmt.Errorf("reading pg_stat_wal_receiver: %w", err)
	}
	if o.InRecovery {
		received := 0
		if len(recvs) > 0 && recvs[0].PID != 0 {
			o.WALReceiver = &recvs[0]
			received = o.WALReceiver.ReceivedTimeline
		}
		// The walreceiver's timeline is gone with the walreceiver (its
		// upstream stopped, say, in a switchover), while the last
		// restartpoint and the minimum recovery point may still be on
		// the timeline before: without the memory a replica that
		// followed a promotion would look diverged from it.
		o.Timeline = max(o.Timeline, streamed.note(o.PostmasterStartTime, received))
	}

	rows, _ = br.Query()
	o.Replication, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReplicationClient, error) {
		var rc ReplicationClient
		var sent, write, flush, replay *string
		if err := r.Scan(&rc.PID, &rc.Usename, &rc.ApplicationName, &rc.ClientAddr, &rc.State,
			&sent, &write, &flush, &replay, &rc.SyncPriority, &rc.SyncState); err != nil {
			return rc, err
		}
		return rc, scanLSNs([]*string{sent, write, flush, replay}, []*LSN{&rc.SentLSN, &rc.WriteLSN, &rc.FlushLSN, &rc.ReplayLSN})
	})
	if err != nil {
		return fmt.Errorf("reading pg_stat_replication: %w", err)
	}

	rows, _ = br.Query()
	o.Slots, err = collectSlots(rows)
	return err
}

// pendingSettings keeps the last list of settings waiting for a restart,
// with the postmaster and configuration load it was read for.
type pendingSettings struct {
	mu       sync.Mutex
	start    time.Time
	loaded   time.Time
	settings []PendingSetting
	valid    bool
}

// read returns the pending settings, querying them only when the server
// started or reloaded its configuration since the last query.
func (ps *pendingSettings) read(ctx context.Context, c *pgx.Conn, start, loaded time.Time) ([]PendingSetting, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.valid && ps.start.Equal(start) && ps.loaded.Equal(loaded) {
		return ps.settings, nil
	}
	rows, _ := c.Query(ctx, observePendingSQL)
	settings, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingSetting, error) {
		var s PendingSetting
		return s, r.Scan(&s.Name, &s.Old, &s.Unit, &s.New)
	})
	if err != nil {
		ps.valid = false
		return nil, fmt.Errorf("reading pending restart settings: %w", err)
	}
	ps.start, ps.loaded, ps.settings, ps.valid = start, loaded, settings, true
	return settings, nil
}

func collectSlots(rows pgx.Rows) ([]Slot, error) {
	slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Slot, error) {
		var s Slot
		var restart, confirmed *string
		if err := r.Scan(&s.Name, &s.Type, &s.Plugin, &s.Database, &s.Temporary, &s.Active, &restart, &confirmed); err != nil {
			return s, err
		}
		return s, scanLSNs([]*string{restart, confirmed}, []*LSN{&s.RestartLSN, &s.ConfirmedFlushLSN})
	})
	if err != nil {
		return nil, fmt.Errorf("reading pg_replication_slots: %w", err)
	}
	return slots, nil
}

func optLSN(s *string) (LSN, error) {
	if s == nil {
		return 0, nil
	}
	return ParseLSN(*s)
}

func scanLSNs(src []*string, dst []*LSN) error {
	for i, s := range src {
		l, err := optLSN(s)
		if err != nil {
			return err
		}
		*dst[i] = l
	}
	return nil
}

// streamedTimeline is the newest timeline the walreceiver of one
// postmaster streamed. A walreceiver streams a timeline only once the
// startup process follows it, so the standby's replay is on that timeline's
// history even after the walreceiver has gone (PostgreSQL's IDENTIFY_SYSTEM
// on a standby tells the same; Patroni asks it).
type streamedTimeline struct {
	mu    sync.Mutex
	start time.Time
	tl    int
}

// note records a walreceiver's timeline (0: none running) for the
// postmaster started at start and returns the newest one seen for it.
func (s *streamedTimeline) note(start time.Time, received int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.start.Equal(start) {
		s.start, s.tl = start, 0
	}
	s.tl = max(s.tl, received)
	return s.tl
}

// ErrNotRunning: the postmaster is not running.
var ErrNotRunning = errors.New("postgres is not running")

// positionsTimeout bounds the positions query of one REST request.
const positionsTimeout = time.Second

const positionsSQL = `
SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  pg_last_wal_receive_lsn()::text,
  pg_last_wal_replay_lsn()::text`

// Positions reads the WAL positions alone, in one short query: for a
// primary its current WAL LSN, for a standby its received and replayed LSNs.
// It is what GET /patroni reports at request time.
//
// It runs on a connection of its own, never the HA loop's: a request does
// not wait behind the loop's queries (a CHECKPOINT, a slot sync) and a
// PostgreSQL that hangs does not make the loop wait behind a request.
// Requests take turns on that connection, and each gives up after
// positionsTimeout, waiting included, so the caller can answer from the
// last observation instead.
func (p *Postgres) Positions(ctx context.Context) (inRecovery bool, wal, received, replayed LSN, err error) {
	if !p.IsRunning() {
		return false, 0, 0, 0, ErrNotRunning
	}
	ctx, cancel := context.WithTimeout(ctx, positionsTimeout)
	defer cancel()
	err = p.withAPIConn(ctx, func(c *pgx.Conn) error {
		var w, r, rp *string
		if err := c.QueryRow(ctx, positionsSQL).Scan(&inRecovery, &w, &r, &rp); err != nil {
			return fmt.Errorf("reading WAL positions: %w", err)
		}
		var err error
		if wal, err = optLSN(w); err != nil {
			return err
		}
		if received, err = optLSN(r); err != nil {
			return err
		}
		replayed, err = optLSN(rp)
		return err
	})
	return inRecovery, wal, received, replayed, err
}
