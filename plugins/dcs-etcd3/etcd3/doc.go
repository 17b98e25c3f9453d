// Package etcd3 is custos's etcd v3 DCS backend, wire-compatible with
// Patroni's etcd3 DCS: the same keys under /<namespace>/<scope>/, the same
// plain and JSON values, one lease per member carried by its leader and
// members/<name> keys, the leader race as a create-only transaction, and
// versions that are etcd mod_revisions.
//
// The lease is kept alive explicitly: RenewLeader and TouchMember (and the
// writes that put a key on it) send one keep-alive each, and nothing runs in
// the background, so a member's keys disappear one TTL after its agent
// stopped renewing them, whether the process is alive, hung or dead.
//
// The package also owns the parsing and validation of the [dcs.etcd3]
// configuration section, with Patroni's etcd3 key names.
package etcd3
