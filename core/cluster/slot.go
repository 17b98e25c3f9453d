package cluster

import (
	"fmt"
	"strings"
)

// maxSlotName is PostgreSQL's NAMEDATALEN-1.
const maxSlotName = 63

// SlotName is the physical replication slot name of a member, as Patroni
// computes it: lower-cased, '-' and '.' become '_', any
// other character outside [a-z0-9_] becomes "u%04d" of its code point, cut
// to 63 bytes.
func SlotName(member string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(member) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case r == '-' || r == '.':
			b.WriteByte('_')
		default:
			fmt.Fprintf(&b, "u%04d", r)
		}
	}
	s := b.String()
	if len(s) > maxSlotName {
		s = s[:maxSlotName]
	}
	return s
}

// Replication slot types.
const (
	SlotPhysical = "physical"
	SlotLogical  = "logical"
)

// SlotSpec is a replication slot to keep: a permanent slot of the dynamic
// configuration (slots) or a member's slot.
type SlotSpec struct {
	Name string
	// Type is SlotPhysical or SlotLogical.
	Type string
	// Database and Plugin describe a logical slot.
	Database string
	Plugin   string
}

// SlotMatcher selects slots to leave alone (ignore_slots); empty fields
// match anything.
type SlotMatcher struct {
	Name, Type, Database, Plugin string
}

// Matches reports whether the slot is selected.
func (m SlotMatcher) Matches(name, typ, database, plugin string) bool {
	return (m.Name == "" || m.Name == name) && (m.Type == "" || m.Type == typ) &&
		(m.Database == "" || m.Database == database) && (m.Plugin == "" || m.Plugin == plugin)
}

// SlotPlan is the set of replication slots a member keeps.
type SlotPlan struct {
	// Members are the physical slots of other members.
	Members []string
	// Permanent are the permanent slots kept on this member.
	Permanent []SlotSpec
	// Ignore are never dropped.
	Ignore []SlotMatcher
	// Advance moves slots forward to these positions.
	Advance map[string]int64
	// CopyFrom is the primary a replica copies its permanent logical slots
	// from when they are missing (PostgreSQL before 16 cannot create a
	// logical slot on a standby); nil when Permanent
	// holds none.
	CopyFrom *Member
}
