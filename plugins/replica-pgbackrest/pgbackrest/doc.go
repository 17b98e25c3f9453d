// Package pgbackrest restores PostgreSQL data directories from pgBackRest
// backups. It serves custos's "pgbackrest" replica method (Creator): a
// replica's data directory is made by `pgbackrest restore
// --stanza=<stanza> --type=standby` with the settings of the
// [postgresql.pgbackrest] section (Config), without a running member to
// copy from.
//
// The restore itself (Restore: the pgbackrest command line, running it
// with progress and cancellation, explaining its failures) does not depend
// on the replica contract, so that creating a new cluster from a backup to
// a recovery target (Target) can run it as well.
package pgbackrest
