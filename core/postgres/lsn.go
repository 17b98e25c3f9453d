package postgres

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL WAL location in bytes. Its text form is "X/Y": the
// high and low 32 bits in hexadecimal.
type LSN uint64

// ParseLSN parses the "X/Y" text form.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("parsing LSN %q: no '/'", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parsing LSN %q: bad high part", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parsing LSN %q: bad low part", s)
	}
	return LSN(h<<32 | l), nil
}

// String formats the LSN as PostgreSQL does ("16/B374D848").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// Int64 returns the LSN as the signed byte position Patroni publishes
// (xlog_location and friends). LSNs past 2^63 do not occur in practice.
func (l LSN) Int64() int64 { return int64(l) }
