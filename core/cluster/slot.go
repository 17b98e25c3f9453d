package cluster

import (
	"fmt"
	"strings"
)

// maxSlotName is PostgreSQL's NAMEDATALEN-1.
const maxSlotName = 63

// SlotName is the physical replication slot name of a member, as Patroni
// computes it (reference §3.9): lower-cased, '-' and '.' become '_', any
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
