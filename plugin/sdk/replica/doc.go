// Package replica is the contract of custos replica plugins: the Creator
// interface a plugin implements to create a replica's data directory (by
// copying a running member, or restoring a backup), its gRPC client and
// server, the sentinel errors, and helpers every method needs: the data
// directory rules (ClaimDataDir) and running an external tool so that a
// cancelled copy leaves no process behind (RunCommand).
//
// A plugin serves one or more replica methods, the names users list in
// postgresql.create_replica_methods; each method's configuration is the
// JSON of its [postgresql.<method>] section.
package replica
