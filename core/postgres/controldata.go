package postgres

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Cluster states as pg_controldata prints them ("Database cluster state").
const (
	StateStartingUp         = "starting up"
	StateShutDown           = "shut down"
	StateShutDownInRecovery = "shut down in recovery"
	StateShuttingDown       = "shutting down"
	StateInCrashRecovery    = "in crash recovery"
	StateInArchiveRecovery  = "in archive recovery"
	StateInProduction       = "in production"
)

// ControlData is the parsed output of pg_controldata. Fields absent from
// the output keep their zero value; Raw holds every line as printed.
type ControlData struct {
	// SystemIdentifier is the database system identifier, the "sysid"
	// kept in the DCS initialize key.
	SystemIdentifier uint64
	ClusterState     string // one of the State* constants
	// CheckpointLSN is "Latest checkpoint location".
	CheckpointLSN LSN
	// RedoLSN is "Latest checkpoint's REDO location".
	RedoLSN LSN
	// Timeline is "Latest checkpoint's TimeLineID".
	Timeline int
	// PrevTimeline is "Latest checkpoint's PrevTimeLineID".
	PrevTimeline int
	// MinRecoveryLSN and MinRecoveryTimeline are "Minimum recovery ending
	// location" and "Min recovery ending loc's timeline"; 0 unless the
	// server was a standby or is being restored.
	MinRecoveryLSN      LSN
	MinRecoveryTimeline int
	BackupStartLSN      LSN
	BackupEndLSN        LSN
	// EndOfBackupRequired is "End-of-backup record required".
	EndOfBackupRequired bool
	WALLevel            string
	WALLogHints         bool
	FullPageWrites      bool
	// DataChecksumVersion is "Data page checksum version"; 0 means data
	// checksums are off.
	DataChecksumVersion int
	// Settings recorded in pg_control, needed to start a standby.
	MaxConnections       int
	MaxWorkerProcesses   int
	MaxWALSenders        int
	MaxPreparedXacts     int
	MaxLocksPerXact      int
	TrackCommitTimestamp bool
	WALSegmentSize       int64
	ControlVersion       int
	CatalogVersion       int
	Raw                  map[string]string
}

// CleanShutdown reports whether the last shutdown was clean, so that
// pg_rewind can work on the data directory without crash recovery first.
func (c ControlData) CleanShutdown() bool {
	return c.ClusterState == StateShutDown || c.ClusterState == StateShutDownInRecovery
}

// ParseControlData parses pg_controldata output (run with LC_ALL=C). It
// needs at least the system identifier and the cluster state; any field
// it knows that holds a malformed value is an error, unknown lines are
// kept in Raw only.
func ParseControlData(out []byte) (ControlData, error) {
	cd := ControlData{Raw: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		if key == "" {
			continue
		}
		cd.Raw[key] = strings.TrimSpace(value)
	}
	if err := sc.Err(); err != nil {
		return ControlData{}, fmt.Errorf("reading pg_controldata output: %w", err)
	}

	p := controlParser{raw: cd.Raw}
	sysid, ok := cd.Raw["Database system identifier"]
	if !ok {
		return ControlData{}, fmt.Errorf("parsing pg_controldata output: no database system identifier")
	}
	var err error
	if cd.SystemIdentifier, err = strconv.ParseUint(sysid, 10, 64); err != nil {
		return ControlData{}, fmt.Errorf("parsing pg_controldata database system identifier %q: %w", sysid, err)
	}
	if cd.ClusterState, ok = cd.Raw["Database cluster state"]; !ok || cd.ClusterState == "" {
		return ControlData{}, fmt.Errorf("parsing pg_controldata output: no database cluster state")
	}
	p.lsn(&cd.CheckpointLSN, "Latest checkpoint location")
	p.lsn(&cd.RedoLSN, "Latest checkpoint's REDO location")
	p.int(&cd.Timeline, "Latest checkpoint's TimeLineID")
	p.int(&cd.PrevTimeline, "Latest checkpoint's PrevTimeLineID")
	p.lsn(&cd.MinRecoveryLSN, "Minimum recovery ending location")
	p.int(&cd.MinRecoveryTimeline, "Min recovery ending loc's timeline")
	p.lsn(&cd.BackupStartLSN, "Backup start location")
	p.lsn(&cd.BackupEndLSN, "Backup end location")
	p.bool(&cd.EndOfBackupRequired, "End-of-backup record required")
	cd.WALLevel = cd.Raw["wal_level setting"]
	p.bool(&cd.WALLogHints, "wal_log_hints setting")
	p.bool(&cd.FullPageWrites, "Latest checkpoint's full_page_writes")
	p.int(&cd.DataChecksumVersion, "Data page checksum version")
	p.int(&cd.MaxConnections, "max_connections setting")
	p.int(&cd.MaxWorkerProcesses, "max_worker_processes setting")
	p.int(&cd.MaxWALSenders, "max_wal_senders setting")
	p.int(&cd.MaxPreparedXacts, "max_prepared_xacts setting")
	p.int(&cd.MaxLocksPerXact, "max_locks_per_xact setting")
	p.bool(&cd.TrackCommitTimestamp, "track_commit_timestamp setting")
	p.int64(&cd.WALSegmentSize, "Bytes per WAL segment")
	p.int(&cd.ControlVersion, "pg_control version number")
	p.int(&cd.CatalogVersion, "Catalog version number")
	if p.err != nil {
		return ControlData{}, p.err
	}
	return cd, nil
}

// controlParser converts known fields, keeping the first error.
type controlParser struct {
	raw map[string]string
	err error
}

func (p *controlParser) get(key string) (string, bool) {
	v, ok := p.raw[key]
	return v, ok && p.err == nil
}

func (p *controlParser) fail(key, v string, err error) {
	p.err = fmt.Errorf("parsing pg_controldata %q value %q: %w", key, v, err)
}

func (p *controlParser) lsn(dst *LSN, key string) {
	if v, ok := p.get(key); ok {
		l, err := ParseLSN(v)
		if err != nil {
			p.fail(key, v, err)
		}
		*dst = l
	}
}

func (p *controlParser) int(dst *int, key string) {
	if v, ok := p.get(key); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			p.fail(key, v, err)
		}
		*dst = n
	}
}

func (p *controlParser) int64(dst *int64, key string) {
	if v, ok := p.get(key); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			p.fail(key, v, err)
		}
		*dst = n
	}
}

func (p *controlParser) bool(dst *bool, key string) {
	if v, ok := p.get(key); ok {
		switch v {
		case "on", "yes":
			*dst = true
		case "off", "no":
			*dst = false
		default:
			p.fail(key, v, fmt.Errorf("not on/off"))
		}
	}
}

// ControlData runs pg_controldata on the data directory and parses it.
func (p *Postgres) ControlData(ctx context.Context) (ControlData, error) {
	out, err := p.output(ctx, p.bin(BinPgControlData), p.c().cfg.DataDir)
	if err != nil {
		return ControlData{}, fmt.Errorf("running pg_controldata on %s: %w", p.c().cfg.DataDir, err)
	}
	cd, err := ParseControlData(out)
	if err != nil {
		return ControlData{}, fmt.Errorf("pg_controldata on %s: %w", p.c().cfg.DataDir, err)
	}
	return cd, nil
}
