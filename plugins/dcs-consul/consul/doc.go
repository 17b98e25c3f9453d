// Package consul is custos's Consul DCS backend, wire-compatible with
// Patroni's Consul DCS: the same keys under <namespace>/<scope>/ (without a
// leading slash), the same plain and JSON values, versions that are Consul
// ModifyIndexes, and one session per member named <scope>-<member> with
// behavior=delete, lock_delay=1ms and TTL = ttl/2, which its leader and
// members/<name> keys are acquired with (?acquire=<session>). Consul
// invalidates a session up to twice its TTL after the last renewal, so the
// keys go one ttl after the member stopped renewing.
//
// The session is renewed explicitly: AcquireLeader, RenewLeader, TakeLeader
// and TouchMember renew it (or create a new one when Consul no longer knows
// it) before they write, and nothing runs in the background, so a member's
// keys disappear one TTL after its agent stopped renewing them, whether the
// process is alive, hung or dead. Consul's smallest session TTL is 10 s, so
// the smallest TTL is 20 s (capability dcs.min_ttl_seconds).
//
// Writes that must be atomic and are not expressible as one KV call (the
// create-only leader race with a lock, moving a key onto a new session) are
// Consul transactions. The watch is a blocking query on the cluster prefix
// whose successive listings are diffed into put and delete events.
//
// With register_service the backend also registers the member as a Consul
// service named after the scope, as Patroni does, from the role, state,
// api_url and conn_url found in the member data handed to TouchMember.
//
// The package also owns the parsing and validation of the [dcs.consul]
// configuration section, with Patroni's consul key names.
package consul
