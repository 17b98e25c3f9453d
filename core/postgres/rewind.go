package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrCannotRewind wraps the reason pg_rewind cannot be used.
var ErrCannotRewind = errors.New("pg_rewind cannot be used")

// CanRewind returns nil when pg_rewind can be used on this data
// directory: use_pg_rewind is on, the pg_rewind binary runs, and the
// cluster has wal_log_hints on or data checksums (per pg_controldata).
// Otherwise the error wraps ErrCannotRewind and says why.
func (p *Postgres) CanRewind(ctx context.Context) error {
	if !p.c().cfg.UsePgRewind {
		return fmt.Errorf("%w: use_pg_rewind is off", ErrCannotRewind)
	}
	if _, err := p.output(ctx, p.bin(BinPgRewind), "--version"); err != nil {
		return fmt.Errorf("%w: %v", ErrCannotRewind, err)
	}
	cd, err := p.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCannotRewind, err)
	}
	if !cd.WALLogHints && cd.DataChecksumVersion == 0 {
		return fmt.Errorf("%w: neither wal_log_hints nor data checksums are on", ErrCannotRewind)
	}
	return nil
}

// CrashRecovery brings a data directory whose last shutdown was unclean to
// a clean shutdown by running PostgreSQL in single-user mode (as Patroni
// does before pg_rewind). Signal files are removed first: single-user mode
// refuses standby mode. It does nothing when pg_control is already clean.
func (p *Postgres) CrashRecovery(ctx context.Context) error {
	if p.IsRunning() {
		return fmt.Errorf("crash recovery: postgres is running")
	}
	cd, err := p.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("crash recovery: %w", err)
	}
	if cd.CleanShutdown() {
		return nil
	}
	dd := p.c().cfg.DataDir
	for _, f := range []string{standbySignalFile, recoverySignal} {
		if err := setSignalFile(filepath.Join(dd, f), false); err != nil {
			return fmt.Errorf("crash recovery: %w", err)
		}
	}
	p.logger.Info("running single-user crash recovery", "cluster_state", cd.ClusterState)
	cmd := p.command(ctx, p.bin(BinPostgres), "--single", "-D", dd, "--config-file="+filepath.Join(dd, confFile),
		"-c", "archive_mode=off", "postgres")
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("crash recovery: %w", err)
	}
	defer devnull.Close()
	cmd.Stdin = devnull
	cmd.Dir = dd
	if _, err := runCommand(cmd); err != nil {
		return fmt.Errorf("crash recovery in single-user mode: %w", err)
	}
	if cd, err = p.ControlData(ctx); err != nil {
		return fmt.Errorf("crash recovery: %w", err)
	}
	if !cd.CleanShutdown() {
		return fmt.Errorf("crash recovery: cluster state is still %q", cd.ClusterState)
	}
	return nil
}

// Rewind resynchronizes the stopped local data directory with source
// using pg_rewind, connecting as the rewind role (or the superuser) with
// the password from the pgpass file. An unclean shutdown is recovered in
// single-user mode first. Afterwards the agent's files are rewritten for a
// standby of source (pg_rewind copies the source's configuration), so the
// next Start follows it.
//
// The source must have checkpointed after its promotion (Patroni's
// checkpoint_after_promote), or pg_rewind sees the old timeline there.
func (p *Postgres) Rewind(ctx context.Context, source Upstream) error {
	if p.IsRunning() {
		return fmt.Errorf("pg_rewind: postgres is running")
	}
	if pid, alive := p.postmasterFromPidFile(); alive {
		return fmt.Errorf("pg_rewind: a postmaster (pid %d) is running on %s", pid, p.c().cfg.DataDir)
	}
	if err := p.CrashRecovery(ctx); err != nil {
		return fmt.Errorf("pg_rewind: %w", err)
	}
	if err := p.WritePgpass(); err != nil {
		return fmt.Errorf("pg_rewind: %w", err)
	}
	p.logger.Info("running pg_rewind", "source", source.Host+":"+strconv.Itoa(source.Port))
	out, err := p.output(ctx, p.bin(BinPgRewind), "--target-pgdata="+p.c().cfg.DataDir, "--source-server="+p.RewindDSN(source))
	if err != nil {
		return fmt.Errorf("pg_rewind from %s:%d: %w", source.Host, source.Port, err)
	}
	p.logger.Debug("pg_rewind finished", "output", strings.TrimSpace(string(out)))
	if err := p.Configure(Setup{Standby: true, Upstream: &source}); err != nil {
		return fmt.Errorf("after pg_rewind: %w", err)
	}
	return nil
}

// Position is where the local WAL ends, for the rewind check.
type Position struct {
	Timeline int
	LSN      LSN
	// InRecovery: LSN is a standby's replay position (or its minimum
	// recovery point) rather than a former primary's last checkpoint.
	InRecovery bool
	// CheckpointEnd is, for a former primary, where its shutdown
	// checkpoint record ends (CheckpointEnd finds it); 0 when unknown.
	CheckpointEnd LSN
}

// PositionFromControlData derives the local position of a stopped server
// as Patroni does: a standby shut down in recovery stands at its minimum
// recovery point; a cleanly shut down primary at its last checkpoint. Any
// other state (a crash) has no usable position: run crash recovery first.
func PositionFromControlData(cd ControlData) (Position, bool) {
	state := cd.ClusterState
	if state == StateShutDownInRecovery || state == StateInArchiveRecovery {
		if cd.MinRecoveryLSN != 0 && cd.MinRecoveryTimeline != 0 {
			return Position{Timeline: cd.MinRecoveryTimeline, LSN: cd.MinRecoveryLSN, InRecovery: true}, true
		}
		state = StateShutDown // it was a primary when it stopped
	}
	if state == StateShutDown {
		return Position{Timeline: cd.Timeline, LSN: cd.CheckpointLSN}, true
	}
	return Position{}, false
}

// NeedsRewind decides whether the local data directory diverged from the
// leader, given the leader's timeline and its timeline history (Patroni's
// rules):
//   - a local timeline ahead of the leader's diverged;
//   - the same timeline did not;
//   - otherwise find the local timeline in the leader's history: a standby
//     diverged when it replayed past the switch point; a former primary
//     when its checkpoint is at or past the switch point, or when its
//     shutdown checkpoint does not end exactly at the switch point;
//   - a local timeline missing from the history diverged.
//
// The reason says which rule applied.
func NeedsRewind(local Position, leaderTimeline int, history []HistoryEntry) (bool, string) {
	switch {
	case local.Timeline <= 0:
		return false, "local timeline unknown"
	case local.Timeline > leaderTimeline:
		return true, fmt.Sprintf("local timeline %d is ahead of the leader's %d", local.Timeline, leaderTimeline)
	case local.Timeline == leaderTimeline:
		return false, fmt.Sprintf("same timeline %d as the leader", leaderTimeline)
	}
	for _, h := range history {
		if h.Timeline == local.Timeline {
			switch {
			case local.InRecovery && local.LSN > h.SwitchPoint:
				return true, fmt.Sprintf("replayed %s past the switch point %s of timeline %d", local.LSN, h.SwitchPoint, h.Timeline)
			case local.InRecovery:
				return false, fmt.Sprintf("replayed %s, not past the switch point %s of timeline %d", local.LSN, h.SwitchPoint, h.Timeline)
			case local.LSN >= h.SwitchPoint:
				return true, fmt.Sprintf("checkpoint %s is at or past the switch point %s of timeline %d", local.LSN, h.SwitchPoint, h.Timeline)
			case local.CheckpointEnd != h.SwitchPoint:
				return true, fmt.Sprintf("shutdown checkpoint ends at %s, not at the switch point %s of timeline %d", local.CheckpointEnd, h.SwitchPoint, h.Timeline)
			default:
				return false, fmt.Sprintf("shutdown checkpoint ends at the switch point %s of timeline %d", h.SwitchPoint, h.Timeline)
			}
		}
		if h.Timeline > local.Timeline {
			return true, fmt.Sprintf("local timeline %d is not in the leader's history", local.Timeline)
		}
	}
	return true, fmt.Sprintf("local timeline %d is not in the leader's history", local.Timeline)
}

var invalidRecordRE = regexp.MustCompile(`invalid record length at ([0-9A-Fa-f]+/[0-9A-Fa-f]+)`)

// CheckpointEnd finds where the checkpoint record at lsn on timeline ends
// by reading the local WAL with pg_waldump: a former primary's shutdown
// checkpoint is its last record, so reading two records fails right where
// it ends. It returns 0 when that cannot be told (another record follows).
func (p *Postgres) CheckpointEnd(ctx context.Context, timeline int, lsn LSN) (LSN, error) {
	cmd := p.command(ctx, p.bin(BinPgWaldump), "-t", strconv.Itoa(timeline), "-s", lsn.String(), "-n", "2",
		"-p", filepath.Join(p.c().cfg.DataDir, "pg_wal"))
	out, err := runCommand(cmd)
	var ce *CommandError
	if err != nil && !errors.As(err, &ce) {
		return 0, fmt.Errorf("running pg_waldump: %w", err)
	}
	return parseCheckpointEnd(string(out), errText(err), lsn), nil
}

func errText(err error) string {
	var ce *CommandError
	if errors.As(err, &ce) {
		return ce.Stderr
	}
	return ""
}

// parseCheckpointEnd reads pg_waldump's output: exactly one record, at
// lsn, followed by "invalid record length at X".
func parseCheckpointEnd(stdout, stderr string, lsn LSN) LSN {
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "lsn: "+fmt.Sprintf("%X/%08X", uint64(lsn)>>32, uint64(lsn)&0xFFFFFFFF)+",") {
		return 0
	}
	if !strings.Contains(stderr, "error in WAL record at "+lsn.String()) {
		return 0
	}
	m := invalidRecordRE.FindStringSubmatch(stderr)
	if m == nil {
		return 0
	}
	end, err := ParseLSN(m[1])
	if err != nil {
		return 0
	}
	return end
}

// LeaderTimeline asks the leader for its timeline (IDENTIFY_SYSTEM) and,
// past timeline 1, its timeline history (TIMELINE_HISTORY), over a
// replication connection as the replication role.
func (p *Postgres) LeaderTimeline(ctx context.Context, leader Upstream) (int, []HistoryEntry, error) {
	cfg, err := pgconn.ParseConfig(p.dsn(p.c().cfg.Replication, leader, [2]string{"application_name", p.c().cfg.Name}))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the leader's timeline: %w", err)
	}
	cfg.Password = p.c().cfg.Replication.Password
	cfg.RuntimeParams["replication"] = "true"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, nil, fmt.Errorf("connecting to the leader %s:%d for its timeline: %w", leader.Host, leader.Port, err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		return 0, nil, fmt.Errorf("IDENTIFY_SYSTEM on the leader: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 2 {
		return 0, nil, fmt.Errorf("IDENTIFY_SYSTEM on the leader: unexpected result")
	}
	tl, err := strconv.Atoi(string(res[0].Rows[0][1]))
	if err != nil {
		return 0, nil, fmt.Errorf("IDENTIFY_SYSTEM on the leader: timeline %q: %w", res[0].Rows[0][1], err)
	}
	if tl <= 1 {
		return tl, nil, nil
	}
	res, err = conn.Exec(ctx, "TIMELINE_HISTORY "+strconv.Itoa(tl)).ReadAll()
	if err != nil {
		return 0, nil, fmt.Errorf("TIMELINE_HISTORY %d on the leader: %w", tl, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 2 {
		return 0, nil, fmt.Errorf("TIMELINE_HISTORY %d on the leader: unexpected result", tl)
	}
	content := res[0].Rows[0][1]
	if strings.HasPrefix(string(content), `\x`) {
		if dec, err := hex.DecodeString(string(content[2:])); err == nil {
			content = dec
		}
	}
	hist, err := ParseHistory(content)
	if err != nil {
		return 0, nil, fmt.Errorf("timeline history %d of the leader: %w", tl, err)
	}
	return tl, hist, nil
}
