package ha

import (
	"fmt"
	"strings"
)

// maxSlotName is PostgreSQL's NAMEDATALEN-1.
const maxSlotName = 63

// SlotName is the physical slot name of a member (reference §3.9):
// lower-cased, '-' and '.' become '_', other characters outside [a-z0-9_]
// become u%04d, cut to 63 characters.
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
