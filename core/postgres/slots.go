package postgres

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

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

// SlotChanges reports what SyncSlots did.
type SlotChanges struct {
	Created []string
	Dropped []string
	// Kept lists unwanted physical slots left alone because they are
	// active.
	Kept []string
	// Copy lists, on a replica, the wanted logical slots to copy from the
	// primary (CopyLogicalSlots).
	Copy []cluster.SlotSpec
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
// left alone. It is SyncSlots with only physical slots in the plan.
func (p *Postgres) EnsurePhysicalSlots(ctx context.Context, wanted []string) (SlotChanges, error) {
	plan := SlotPlan{Ignore: []cluster.SlotMatcher{{Type: SlotLogical}}}
	for _, name := range wanted {
		plan.Wanted = append(plan.Wanted, cluster.SlotSpec{Name: name, Type: SlotPhysical})
	}
	return p.SyncSlots(ctx, plan)
}

func hasCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
