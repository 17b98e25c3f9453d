// Package basebackup is custos's built-in replica method: it creates a
// replica's data directory with pg_basebackup from a running member, as
// Patroni's basebackup method does: `pg_basebackup --pgdata=D -X stream
// --dbname=<dsn>` plus the options of the [postgresql.basebackup] section,
// two attempts five seconds apart, the partial copy removed after each
// failed one.
package basebackup
