// Package etcd3 is custos's etcd v3 DCS backend, wire-compatible with
// Patroni's etcd3 DCS: the same keys under /<namespace>/<scope>/, the same
// plain and JSON values, one lease per member carried by its leader and
// members/<name> keys, the leader race as a create-only transaction, and
// versions that are etcd mod_revisions.
//
// # Lease
//
// The lease is kept alive explicitly and nothing runs in the background, so
// a member's keys disappear one TTL after its agent stopped renewing them,
// whether the process is alive, hung or dead. RenewLeader, AcquireLeader and
// TakeLeader send one keep-alive (or grant) every time: the host counts the
// leader key's lifetime from their return, and etcd keeps the key at least
// one TTL after that keep-alive. TouchMember sends one only when the last
// refresh is older than ttl/3, so that a leader's TouchMember right after
// its RenewLeader sends none, and a replica one every few cycles.
//
// # Attempts
//
// Every operation is bounded by the host's retry timeout, and each of its
// requests is tried attempt by attempt within it, one attempt bounded by the
// retry timeout divided by the number of endpoints (at least one second).
// An etcd member that is frozen (SIGSTOP, a paused machine) keeps its
// connections open and answers nothing, and the client's keepalive takes
// 15 s to give up on them; the balancer hands connections out in turn, so
// an attempt that ran out of time on such a member is followed by one on
// another member, and a majority of healthy members answers within the
// retry timeout. Other callers' requests take turns on the same
// connections, so that the next attempt may be handed the frozen member's
// connection again: the member an attempt ran out of time on is therefore
// connected anew (at most every minReconnect), which takes its hung
// connection out of the turns at once; the new connection is only used
// once the member completes the handshake, that is once it answers again.
// A healthy member that was merely slow is connected again within
// milliseconds. Attempts that fail at once for a reason of the member or of
// the moment (no connection, no leader, a leader election) are repeated
// after a short pause; other errors end the operation. With no quorum every
// attempt fails and the operation fails when the retry timeout is up.
//
// A write whose attempt timed out may still have landed. Plain puts and
// deletes, keep-alives and RenewLeader's transaction do the same when
// repeated. CompareAndSet and AcquireLeader, repeated after such an attempt,
// may find their compare failed by their own write: they report success
// only when the key shows it (see CompareAndSet), and their failure
// otherwise. A lease granted by an attempt that timed out expires unused.
//
// The watch cache opens its watch on whichever member the balancer picks;
// a stream whose creation is not confirmed within one attempt, or whose
// progress requests stay unanswered (maxUnanswered), is replaced by one on
// the next member, and reads use a Range meanwhile.
//
// # Watch cache
//
// Each configured backend keeps one etcd watch on the cluster prefix, with
// etcd's "require leader" option, and a copy of every key under the prefix
// (value, mod_revision, create_revision, lease) fed by it: one Range when the
// watch opens, then the watch's events. Host Watch calls are fed from the
// same watch. A broken watch (lost connection, an etcd member without
// leader, compaction, Close) marks the copy out of sync and a new watch and
// Range rebuild it; the client library's silent resumption of broken watches
// is not used.
//
// Consistency: GetCluster answers from the copy only after a progress
// request sent on the watch stream during the call has been answered, and
// once the copy holds every revision up to that answer and up to the newest
// revision this backend wrote or read. etcd answers a progress request after
// it has sent every change it had committed when it read the request, so
// such a read sees every write completed before GetCluster was called, by
// this backend or by any other client, as the linearizable Range it
// replaces did, with one exception: with several etcd members, a write
// another member acknowledged may still be on its way to the watch's member
// (milliseconds), and shows in the next read. A progress request is one
// message on the open stream (no Raft round, no storage read); it is what a
// read costs while the copy is in sync, and it proves etcd reachable, so
// that reads still fail when etcd is gone and a primary demotes as before.
//
// GetCluster reads the prefix with a linearizable Range instead when the
// copy is out of sync, when the watch is not yet proven in sync on the
// server (etcd 3.4 may start a watch behind and answer progress requests
// while it catches up), when etcd does not answer within syncWait, and
// after any request of this backend failed until one succeeds (an etcd
// member cut off from its leader still answers progress requests until it
// ends its watches, a few election timeouts later).
//
// etcd releases without the fix of etcd issue 15220 (spring 2023; Debian
// 12's 3.4.23 is one) may send a progress answer ahead of an event queued for
// the watch: only when etcd's sender for the stream did not run between the
// write and the request, a stall of the etcd process. The late event is still
// applied, and logged: a read may then miss a change made moments before it,
// never lose it.
//
// The writes skipped thanks to the copy, as Patroni skips them: TouchMember
// does not write members/<name> when the copy, at the newest revision this
// backend has seen, holds it with the same value on the current lease;
// RenewLeader does not run its transaction when the copy holds every change
// up to its keep-alive's revision and shows the leader key with this
// member's name on the current lease.
//
// The package also owns the parsing and validation of the [dcs.etcd3]
// configuration section, with Patroni's etcd3 key names.
package etcd3
