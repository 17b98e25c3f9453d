package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custos-ha/custos/core/cluster"
)

// maxSlotNameLen is NAMEDATALEN-1.
const maxSlotNameLen = 63

// MemberSlot is this member's slot name when use_slots is on, else "".
func (p *Postgres) MemberSlot() string {
	if !p.c().cfg.UseSlots {
		return ""
	}
	return cluster.SlotName(p.c().cfg.Name)
}

// ValidateSlotName checks PostgreSQL's rule for slot names: 1 to 63 of
// lower-case letters, digits and underscores.
func ValidateSlotName(name string) error {
	if name == "" || len(name) > maxSlotNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("replication slot name %q: want 1 to %d characters", name, maxSlotNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("replication slot name %q: only lower-case letters, digits and '_' are allowed", name)
		}
	}
	return nil
}

// SlotChanges reports what EnsurePhysicalSlots did.
type SlotChanges struct {
	Created []string
	Dropped []string
	// Kept lists unwanted physical slots left alone because they are
	// active.
	Kept []string
}

// SQLSTATEs met while managing slots concurrently with others.
const (
	sqlstateDuplicateObject = "42710"
	sqlstateUndefinedObject = "42704"
	sqlstateObjectInUse     = "55006"
)

// EnsurePhysicalSlots makes the physical replication slots of the local
// server match wanted: missing ones are created (reserving WAL at once),
// physical slots not wanted and not active are dropped, logical slots are
// left alone. It is idempotent; a wanted name taken by a logical slot is
// an error.
func (p *Postgres) EnsurePhysicalSlots(ctx context.Context, wanted []string) (SlotChanges, error) {
	want := map[string]bool{}
	for _, name := range wanted {
		if err := ValidateSlotName(name); err != nil {
			return SlotChanges{}, err
		}
		want[name] = true
	}
	var ch SlotChanges
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		slots, err := querySlots(ctx, c)
		if err != nil {
			return err
		}
		have := map[string]Slot{}
		for _, s := range slots {
			have[s.Name] = s
		}
		for _, name := range sortedKeys(want) {
			s, ok := have[name]
			if ok && s.Type != "physical" {
				return fmt.Errorf("replication slot %s exists as a %s slot", name, s.Type)
			}
			if ok {
				continue
			}
			if _, err := c.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", name); err != nil {
				if hasCode(err, sqlstateDuplicateObject) {
					continue
				}
				return fmt.Errorf("creating replication slot %s: %w", name, err)
			}
			ch.Created = append(ch.Created, name)
		}
		for _, s := range slots {
			if s.Type != "physical" || want[s.Name] || s.Temporary {
				continue
			}
			if s.Active {
				ch.Kept = append(ch.Kept, s.Name)
				continue
			}
			if _, err := c.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.Name); err != nil {
				switch {
				case hasCode(err, sqlstateUndefinedObject):
					continue
				case hasCode(err, sqlstateObjectInUse):
					ch.Kept = append(ch.Kept, s.Name)
					continue
				}
				return fmt.Errorf("dropping replication slot %s: %w", s.Name, err)
			}
			ch.Dropped = append(ch.Dropped, s.Name)
		}
		return nil
	})
	if err != nil {
		return ch, fmt.Errorf("ensuring replication slots: %w", err)
	}
	if len(ch.Created)+len(ch.Dropped) > 0 {
		p.logger.Info("replication slots changed", "created", strings.Join(ch.Created, ","), "dropped", strings.Join(ch.Dropped, ","))
	}
	return ch, nil
}

func hasCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
