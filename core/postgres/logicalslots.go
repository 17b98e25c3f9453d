package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/core/cluster"
)

// Permanent logical slots on replicas, so that a logical consumer can go
// on from the new primary after a failover. PostgreSQL 11 to
// 15 cannot create a logical slot on a standby, but it loads one found in
// pg_replslot at start-up and pg_replication_slot_advance moves it there
// (fast-forward decoding, clamped to the replay position). So a replica
// copies the slot's state file from the primary
// (pg_read_binary_file('pg_replslot/<name>/state')), writes it while
// PostgreSQL is stopped, starts again, and from then on advances the slot
// to the position the leader publishes in /status.slots. With
// hot_standby_feedback the replica's catalog_xmin reaches the primary
// through its physical slot, so the catalog rows the copy decodes with are
// kept.

const (
	// slotCopyTimeout bounds the read of the state files from the primary:
	// a few catalog rows and files of a few hundred bytes.
	slotCopyTimeout = 10 * time.Second
	// slotCopyStatementTimeout is the primary-side statement_timeout of
	// that read (Patroni: 2 s).
	slotCopyStatementTimeout = "2000"
	// logicalAdvanceTimeout bounds the advance of the logical slots of one
	// cycle: pg_replication_slot_advance decodes the WAL since the slot's
	// restart_lsn, usually a few megabytes, and the HA loop must not hang
	// behind a slot copied far behind; a cancelled advance is tried again
	// next cycle.
	logicalAdvanceTimeout = 30 * time.Second
)

// SQLSTATEs of a logical slot that cannot be advanced on the replica: the
// WAL from its restart_lsn is gone here, or the slot was invalidated. A
// fresh copy from the primary repairs both.
const (
	sqlstateUndefinedFile       = "58P01"
	sqlstateNotInPrerequisite   = "55000"
	sqlstateInsufficientPrivile = "42501"
)

// slotCopies is what a replica remembers between cycles about its copied
// logical slots.
type slotCopies struct {
	mu sync.Mutex
	// recopy are the local slots to copy again (their advance failed with
	// the WAL gone or the slot invalidated).
	recopy map[string]bool
	// last is the state file last copied for each slot: for a slot to
	// copy again, the same file would fail the same way, so the recopy
	// waits for the primary's slot to move.
	last map[string][]byte
}

func (s *slotCopies) recopyNames() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.recopy))
	for k := range s.recopy {
		out[k] = true
	}
	return out
}

func (s *slotCopies) markRecopy(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recopy == nil {
		s.recopy = map[string]bool{}
	}
	s.recopy[name] = true
}

// lastRecopies returns the state last copied of the slots to copy again;
// a slot missing here is copied whatever it was before.
func (s *slotCopies) lastRecopies() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k := range s.recopy {
		if v, ok := s.last[k]; ok {
			out[k] = v
		}
	}
	return out
}

func (s *slotCopies) copied(name string, state []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recopy, name)
	if s.last == nil {
		s.last = map[string][]byte{}
	}
	s.last[name] = bytes.Clone(state)
}

// logicalWork is what a replica does this cycle for its permanent logical
// slots.
type logicalWork struct {
	// Copy are the slots to copy from the primary, by name.
	Copy []cluster.SlotSpec
	// Advance maps database -> slot -> the position to advance to.
	Advance map[string]map[string]LSN
}

// planReplicaLogicalSlots decides, on a replica, which wanted logical
// slots to copy from the primary and which to advance, given the local
// slots (wrong-kind ones already dropped), the positions the leader
// publishes, the local replay position and the slots whose advance asked
// for a new copy. Only slots with a published position are handled
// (Patroni copies only slots with feedback in the DCS): it tells the
// primary has the slot, and it is the advance target. The advance never
// goes past what this replica replayed.
func planReplicaLogicalSlots(wanted []cluster.SlotSpec, have map[string]Slot, published map[string]LSN, replayed LSN, recopy map[string]bool) logicalWork {
	w := logicalWork{Advance: map[string]map[string]LSN{}}
	for _, spec := range wanted {
		if spec.Type != SlotLogical {
			continue
		}
		pos, ok := published[spec.Name]
		if !ok || pos == 0 {
			continue
		}
		s, exists := have[spec.Name]
		if exists && (s.Type != SlotLogical || s.Database != spec.Database || s.Plugin != spec.Plugin) {
			// Not ours to overwrite: SyncSlots drops a mismatch first.
			continue
		}
		if !exists || recopy[spec.Name] {
			w.Copy = append(w.Copy, spec)
			continue
		}
		target := min(pos, replayed)
		if s.Active || target <= s.ConfirmedFlushLSN {
			continue
		}
		if w.Advance[spec.Database] == nil {
			w.Advance[spec.Database] = map[string]LSN{}
		}
		w.Advance[spec.Database][spec.Name] = target
	}
	sort.Slice(w.Copy, func(i, j int) bool { return w.Copy[i].Name < w.Copy[j].Name })
	return w
}

// primarySlot is a row of the primary's pg_replication_slots as the copy
// reads it.
type primarySlot struct {
	Name, Type, Database, Plugin string
	// Xmin and CatalogXmin are "" when NULL.
	Xmin, CatalogXmin string
	// ConfirmedFlush is 0 when NULL.
	ConfirmedFlush LSN
	// State is the content of pg_replslot/<name>/state (logical slots).
	State []byte
}

// slotCopy is one state file to install.
type slotCopy struct {
	Name  string
	State []byte
}

// chooseSlotCopies decides which of the primary's slots to install, and
// why the others are not: the slot must match the configuration, have a
// confirmed_flush_lsn and a catalog_xmin (a slot still being created has
// neither), and this replica's hot_standby_feedback must reach the
// primary (its physical slot there, memberSlot, has an xmin) so that the
// catalog rows the copy needs are kept once it runs here. A state file
// identical to the one copied last time would fail the same way and is
// not copied again.
func chooseSlotCopies(want []cluster.SlotSpec, rows []primarySlot, memberSlot string, feedback bool, last map[string][]byte) ([]slotCopy, []string) {
	var (
		out  []slotCopy
		skip []string
	)
	if !feedback {
		return nil, []string{"hot_standby_feedback is off here: logical slot failover needs it"}
	}
	byName := map[string]primarySlot{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	if memberSlot != "" {
		m, ok := byName[memberSlot]
		switch {
		case !ok:
			return nil, []string{fmt.Sprintf("the physical slot %s does not exist on the primary", memberSlot)}
		case m.Xmin == "" && m.CatalogXmin == "":
			return nil, []string{fmt.Sprintf("no hot standby feedback in the physical slot %s on the primary yet", memberSlot)}
		}
	}
	for _, spec := range want {
		r, ok := byName[spec.Name]
		switch {
		case !ok:
			skip = append(skip, spec.Name+": not on the primary")
		case r.Type != SlotLogical || r.Database != spec.Database || r.Plugin != spec.Plugin:
			skip = append(skip, fmt.Sprintf("%s: %s slot on the primary (database %q, plugin %q) does not match the configuration", spec.Name, r.Type, r.Database, r.Plugin))
		case r.ConfirmedFlush == 0 || r.CatalogXmin == "":
			skip = append(skip, spec.Name+": no confirmed_flush_lsn or catalog_xmin on the primary yet")
		case len(r.State) == 0:
			skip = append(skip, spec.Name+": empty state file on the primary")
		case last[spec.Name] != nil && bytes.Equal(last[spec.Name], r.State):
			skip = append(skip, spec.Name+": the primary's slot has not moved since the last copy")
		default:
			out = append(out, slotCopy{Name: spec.Name, State: r.State})
		}
	}
	return out, skip
}

// readPrimarySlotsSQL reads the slots to copy and this replica's physical
// slot from a server that is not in recovery (a demoted leader answers
// nothing). pg_read_binary_file needs a superuser or pg_read_server_files.
const readPrimarySlotsSQL = `
SELECT slot_name::text, slot_type, COALESCE(database::text, ''), COALESCE(plugin::text, ''),
  COALESCE(xmin::text, ''), COALESCE(catalog_xmin::text, ''), confirmed_flush_lsn::text,
  CASE WHEN slot_type = 'logical'
    THEN pg_catalog.pg_read_binary_file('pg_replslot/' || slot_name || '/state') END
FROM pg_catalog.pg_replication_slots
WHERE NOT pg_catalog.pg_is_in_recovery() AND NOT temporary AND slot_name = ANY($1)`

// readPrimarySlots connects to the primary as the rewind user (the
// superuser when none is configured), like pg_rewind, and reads the named
// slots.
func (p *Postgres) readPrimarySlots(ctx context.Context, primary Upstream, names []string) ([]primarySlot, error) {
	creds := p.rewindCredentials()
	cfg, err := pgx.ParseConfig(p.dsn(creds, primary,
		[2]string{"application_name", applicationName},
		[2]string{"connect_timeout", fmt.Sprint(int(connectTimeout / time.Second))}))
	if err != nil {
		return nil, fmt.Errorf("building the connection to the primary %s:%d: %w", primary.Host, primary.Port, err)
	}
	cfg.Password = creds.Password
	cfg.RuntimeParams["statement_timeout"] = slotCopyStatementTimeout
	ctx, cancel := context.WithTimeout(ctx, slotCopyTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the primary %s:%d as %s: %w", primary.Host, primary.Port, creds.Username, err)
	}
	defer c.Close(context.Background())
	rows, _ := c.Query(ctx, readPrimarySlotsSQL, names)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (primarySlot, error) {
		var (
			s         primarySlot
			confirmed *string
		)
		if err := r.Scan(&s.Name, &s.Type, &s.Database, &s.Plugin, &s.Xmin, &s.CatalogXmin, &confirmed, &s.State); err != nil {
			return s, err
		}
		l, err := optLSN(confirmed)
		s.ConfirmedFlush = l
		return s, err
	})
	if err != nil {
		if hasCode(err, sqlstateInsufficientPrivile) {
			err = fmt.Errorf("%w (the user %s needs superuser or pg_read_server_files)", err, creds.Username)
		}
		return nil, fmt.Errorf("reading slot state files on the primary %s:%d: %w", primary.Host, primary.Port, err)
	}
	return out, nil
}

// CopyLogicalSlots copies the permanent logical slots missing on this
// replica (SlotChanges.Copy) from the primary: it reads their state files
// there, and when there is anything to copy, stops PostgreSQL (fast),
// writes them into pg_replslot and starts it again (slots are loaded at
// start-up): one restart for all of them. It returns the names copied;
// nothing is copied, and nothing restarted, when the primary is not ready
// for it (see chooseSlotCopies). Once stopped, PostgreSQL is started again
// even when writing a file failed.
func (p *Postgres) CopyLogicalSlots(ctx context.Context, primary Upstream, slots []cluster.SlotSpec, startTimeout time.Duration) ([]string, error) {
	if len(slots) == 0 {
		return nil, nil
	}
	var feedback, inRecovery bool
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('hot_standby_feedback')::bool").Scan(&inRecovery, &feedback)
	})
	if err != nil {
		return nil, fmt.Errorf("copying logical slots: reading hot_standby_feedback: %w", err)
	}
	if !inRecovery {
		// Never on a primary: it creates its logical slots itself.
		return nil, nil
	}
	names := make([]string, 0, len(slots)+1)
	for _, s := range slots {
		names = append(names, s.Name)
	}
	if primary.SlotName != "" {
		names = append(names, primary.SlotName)
	}
	rows, err := p.readPrimarySlots(ctx, primary, names)
	if err != nil {
		return nil, fmt.Errorf("copying logical slots: %w", err)
	}
	copies, skipped := chooseSlotCopies(slots, rows, primary.SlotName, feedback, p.slotCopies.lastRecopies())
	if len(skipped) > 0 {
		p.logger.Warn("not copying logical replication slots yet", "reasons", strings.Join(skipped, "; "))
	}
	if len(copies) == 0 {
		return nil, nil
	}
	copied := make([]string, 0, len(copies))
	for _, c := range copies {
		copied = append(copied, c.Name)
	}
	p.logger.Info("logical replication slots copied from the primary, restarting", "slots", strings.Join(copied, ","),
		"primary", fmt.Sprintf("%s:%d", primary.Host, primary.Port))
	if err := p.Stop(ctx, StopOptions{Mode: StopFast}); err != nil {
		return nil, fmt.Errorf("copying logical slots: %w", err)
	}
	werr := writeSlotStates(p.DataDir(), copies)
	if werr == nil {
		for _, c := range copies {
			p.slotCopies.copied(c.Name, c.State)
		}
	}
	if err := p.Start(ctx, startTimeout); err != nil {
		return nil, errors.Join(werr, fmt.Errorf("starting postgres after copying logical slots: %w", err))
	}
	if werr != nil {
		return nil, fmt.Errorf("copying logical slots: %w", werr)
	}
	return copied, nil
}

// writeSlotStates installs state files into pg_replslot while PostgreSQL is
// stopped: each goes into <name>.tmp (which PostgreSQL removes at start-up
// if left behind), is synced, and replaces <name> by a rename; the
// directories are synced too. Modes follow the data directory's (0700 and
// 0600, or 0750 and 0640 with group access).
func writeSlotStates(dataDir string, copies []slotCopy) error {
	dirMode, fileMode := fs.FileMode(0o700), fs.FileMode(0o600)
	if fi, err := os.Stat(dataDir); err == nil && fi.Mode().Perm()&0o070 != 0 {
		dirMode, fileMode = 0o750, 0o640
	}
	replslot := filepath.Join(dataDir, "pg_replslot")
	for _, c := range copies {
		if err := ValidateSlotName(c.Name); err != nil {
			return err
		}
		if err := writeSlotState(replslot, c.Name, c.State, dirMode, fileMode); err != nil {
			return fmt.Errorf("writing the state of replication slot %s: %w", c.Name, err)
		}
	}
	return syncDir(replslot)
}

func writeSlotState(replslot, name string, state []byte, dirMode, fileMode fs.FileMode) error {
	tmp := filepath.Join(replslot, name+".tmp")
	dst := filepath.Join(replslot, name)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, dirMode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, dirMode); err != nil { // past the umask
		return err
	}
	f, err := os.OpenFile(filepath.Join(tmp, "state"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	if err := writeSyncClose(f, state, fileMode); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(dst)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// advanceLogicalSlots advances logical slots on a replica, from a
// connection to each slot's database (pg_replication_slot_advance only
// moves a logical slot of the database it runs in). A slot whose WAL is
// gone here or that was invalidated is marked to be copied again.
func (p *Postgres) advanceLogicalSlots(ctx context.Context, advance map[string]map[string]LSN) error {
	if len(advance) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, logicalAdvanceTimeout)
	defer cancel()
	var errs []error
	for _, db := range sortedKeys(advance) {
		cfg, err := p.localConfig()
		if err != nil {
			return err
		}
		cfg.Database = db
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("connecting to database %s to advance logical slots: %w", db, err))
			continue
		}
		for _, name := range sortedKeys(advance[db]) {
			target := advance[db][name]
			if _, err := c.Exec(ctx, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", name, target.String()); err != nil {
				if hasCode(err, sqlstateUndefinedFile) || hasCode(err, sqlstateNotInPrerequisite) {
					p.slotCopies.markRecopy(name)
					p.logger.Warn("logical replication slot cannot be advanced here, copying it again from the primary", "slot", name, "lsn", target.String(), "error", err)
					continue
				}
				errs = append(errs, fmt.Errorf("advancing logical replication slot %s to %s: %w", name, target, err))
			}
		}
		c.Close(context.Background())
	}
	return errors.Join(errs...)
}
