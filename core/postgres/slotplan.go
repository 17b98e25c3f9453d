package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/custos-ha/custos/core/cluster"
)

// The slot types, specs and matchers are core/cluster's.
const (
	SlotPhysical = cluster.SlotPhysical
	SlotLogical  = cluster.SlotLogical
)

// SlotPlan is what SyncSlots makes true.
type SlotPlan struct {
	// Wanted are created when missing (logical ones only on a primary) and
	// recreated when they exist with another type, database or plugin.
	Wanted []cluster.SlotSpec
	// Ignore are never dropped.
	Ignore []cluster.SlotMatcher
	// Advance moves slots forward to these positions (on a replica, the
	// primary's permanent slots follow the positions it publishes in
	// /status): physical ones, and on a replica the wanted logical ones,
	// which are to be copied from the primary when missing
	// (SlotChanges.Copy).
	Advance map[string]LSN
}

// SyncSlots makes the server's replication slots match the plan: wanted
// slots are created, slots neither wanted nor ignored nor temporary nor
// active are dropped, and slots are advanced. On a replica, wanted logical
// slots cannot be created: the ones missing (or to be copied again) come
// back in SlotChanges.Copy for CopyLogicalSlots, the others are advanced
// (failures are logged, and a slot that needs it is copied again later).
// It is idempotent.
func (p *Postgres) SyncSlots(ctx context.Context, plan SlotPlan) (SlotChanges, error) {
	want := map[string]cluster.SlotSpec{}
	for _, s := range plan.Wanted {
		if err := ValidateSlotName(s.Name); err != nil {
			return SlotChanges{}, err
		}
		if s.Type == "" {
			s.Type = SlotPhysical
		}
		if s.Type == SlotLogical && (s.Database == "" || s.Plugin == "") {
			return SlotChanges{}, fmt.Errorf("logical replication slot %s needs a database and a plugin", s.Name)
		}
		want[s.Name] = s
	}
	var (
		ch      SlotChanges
		logical []cluster.SlotSpec
		work    logicalWork
	)
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		var (
			inRecovery bool
			replayed   *string
		)
		// One round trip for both reads.
		b := &pgx.Batch{}
		b.Queue("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
		b.Queue(observeSlotsSQL)
		br := c.SendBatch(ctx, b)
		err := br.QueryRow().Scan(&inRecovery, &replayed)
		var slots []Slot
		if err != nil {
			err = fmt.Errorf("reading recovery state: %w", err)
		} else {
			rows, _ := br.Query()
			slots, err = collectSlots(rows)
		}
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("reading recovery state and slots: %w", cerr)
		}
		if err != nil {
			return err
		}
		have := map[string]Slot{}
		for _, s := range slots {
			have[s.Name] = s
		}
		// Drop what is neither wanted nor ignored, and wanted slots of the
		// wrong kind (they are created again below).
		for _, s := range slots {
			w, wanted := want[s.Name]
			mismatch := wanted && (w.Type != s.Type || w.Type == SlotLogical && (w.Database != s.Database || w.Plugin != s.Plugin))
			if s.Temporary || (wanted && !mismatch) || ignored(plan.Ignore, s) {
				continue
			}
			if s.Active {
				ch.Kept = append(ch.Kept, s.Name)
				continue
			}
			dropped, err := dropSlot(ctx, c, s.Name)
			if err != nil {
				return err
			}
			if dropped {
				ch.Dropped = append(ch.Dropped, s.Name)
				delete(have, s.Name)
			} else {
				ch.Kept = append(ch.Kept, s.Name)
			}
		}
		for _, name := range sortedKeys(want) {
			w := want[name]
			if _, ok := have[name]; ok {
				continue
			}
			switch {
			case w.Type == SlotPhysical:
				if _, err := c.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", name); err != nil {
					if hasCode(err, sqlstateDuplicateObject) {
						continue
					}
					return fmt.Errorf("creating replication slot %s: %w", name, err)
				}
				ch.Created = append(ch.Created, name)
			case !inRecovery:
				// A logical slot is created from a connection to its
				// database, after this connection is released.
				logical = append(logical, w)
			}
		}
		for _, name := range sortedKeys(plan.Advance) {
			s, ok := have[name]
			target := plan.Advance[name]
			if !ok || s.Type != SlotPhysical || s.Active || target <= s.RestartLSN {
				continue
			}
			if _, err := c.Exec(ctx, "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", name, target.String()); err != nil {
				p.logger.Debug("advancing replication slot", "slot", name, "lsn", target.String(), "error", err)
			}
		}
		if inRecovery {
			replay, err := optLSN(replayed)
			if err != nil {
				return fmt.Errorf("reading the replay position: %w", err)
			}
			work = planReplicaLogicalSlots(plan.Wanted, have, plan.Advance, replay, p.slotCopies.recopyNames())
			ch.Copy = work.Copy
		}
		return nil
	})
	if err == nil {
		if aerr := p.advanceLogicalSlots(ctx, work.Advance); aerr != nil {
			p.logger.Warn("advancing logical replication slots", "error", aerr)
		}
		for _, w := range logical {
			if err = p.createLogicalSlot(ctx, w); err != nil {
				break
			}
			ch.Created = append(ch.Created, w.Name)
		}
	}
	if err != nil {
		return ch, fmt.Errorf("syncing replication slots: %w", err)
	}
	if len(ch.Created)+len(ch.Dropped) > 0 {
		p.logger.Info("replication slots changed", "created", strings.Join(ch.Created, ","), "dropped", strings.Join(ch.Dropped, ","))
	}
	return ch, nil
}

func ignored(ms []cluster.SlotMatcher, s Slot) bool {
	for _, m := range ms {
		if m.Matches(s.Name, s.Type, s.Database, s.Plugin) {
			return true
		}
	}
	return false
}

// dropSlot drops an inactive slot; false when it turned out to be in use.
func dropSlot(ctx context.Context, c *pgx.Conn, name string) (bool, error) {
	if _, err := c.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
		switch {
		case hasCode(err, sqlstateUndefinedObject):
			return true, nil
		case hasCode(err, sqlstateObjectInUse):
			return false, nil
		}
		return false, fmt.Errorf("dropping replication slot %s: %w", name, err)
	}
	return true, nil
}

// createLogicalSlot creates a logical slot through a connection to its
// database.
func (p *Postgres) createLogicalSlot(ctx context.Context, s cluster.SlotSpec) error {
	cfg, err := p.localConfig()
	if err != nil {
		return err
	}
	cfg.Database = s.Database
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting to database %s for logical slot %s: %w", s.Database, s.Name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, $2)", s.Name, s.Plugin); err != nil && !hasCode(err, sqlstateDuplicateObject) {
		return fmt.Errorf("creating logical replication slot %s (%s, %s): %w", s.Name, s.Database, s.Plugin, err)
	}
	return nil
}
