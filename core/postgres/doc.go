// Package postgres runs and observes the local PostgreSQL as a whole:
// data directory checks, pg_controldata, initdb bootstrap and its roles,
// the agent-owned configuration files (postgresql.conf, pg_hba.conf,
// pg_ident.conf, the pgpass file, standby.signal), the postmaster as a
// direct child of the agent (start, stop, promote, reload, adopt one that
// is already running), observation through one pgx connection, physical
// replication slots, pg_rewind and wiping the data directory for a
// re-clone.
//
// It makes no decisions: the HA core decides, this package executes and
// reports. Every call that may block takes a context first; rendering and
// the parsers are pure functions. Passwords never reach a log line or a
// command line: libpq tools get them through the pgpass file.
//
// PostgreSQL refuses to run as root, so the agent runs as the PostgreSQL OS
// user; the package does not switch users but checks that the data
// directory belongs to the current user.
//
// Supported servers: PostgreSQL 12 and later (recovery through
// standby.signal and postgresql.conf).
package postgres
