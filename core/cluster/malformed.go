package cluster

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Keys as named in Cluster.Malformed.
const (
	KeyInitialize = string(dcs.KeyInitialize)
	KeyLeader     = dcs.LeaderPath
	KeyFailover   = string(dcs.KeyFailover)
	KeySync       = string(dcs.KeySync)
	KeyHistory    = string(dcs.KeyHistory)
	KeyStatus     = string(dcs.KeyStatus)
	KeyFailsafe   = string(dcs.KeyFailsafe)
)

// MemberKey is the key of the member's value, as named in Cluster.Malformed.
func MemberKey(name string) string { return "members/" + name }

// IsMalformed reports whether the key's value did not parse.
func (c *Cluster) IsMalformed(key string) bool {
	_, bad := c.Malformed[key]
	return bad
}

// ValidSysID reports whether s is a database system identifier as
// pg_controldata prints it: an unsigned 64-bit integer in decimal, not 0.
// Patroni also wants at least 10 digits (any identifier PostgreSQL makes
// has them); custos takes a shorter number for an identifier, only a
// different one, which is as safe: it is a mismatch, never released on.
func ValidSysID(s string) bool {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n != 0
}

// validLeaderName checks that the leader key's value can be a member name:
// not empty, no surrounding blanks, no control characters, valid UTF-8.
// A value such as "pg1\n" is no member's name: its holder would not know
// the key as its own.
func validLeaderName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("leader: the value %q names no member", name)
	case strings.TrimSpace(name) != name, !utf8.ValidString(name), strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("leader: %q is not a member name", truncate(name))
	}
	return nil
}

// truncate shortens a value quoted in a problem: a large garbage value
// must not flood the log and /patroni.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// isObject reports whether trimmed JSON starts as an object: json.Unmarshal
// takes null for any struct or map, which no writer means.
func isObject(trimmed []byte) bool { return len(trimmed) > 0 && trimmed[0] == '{' }
