// Package zookeeper is custos's ZooKeeper DCS backend, wire-compatible
// with Patroni's ZooKeeper layout, on github.com/go-zookeeper/zk.
//
// # Layout
//
// Everything lives under the znode dcs.Prefix(namespace, scope) without
// its trailing slash, e.g. /service/demo. leader and members/<name> are
// EPHEMERAL znodes of this member's session; initialize, config, failover,
// sync, history, status and failsafe are persistent. Missing parents are
// created as empty persistent znodes. Values are stored byte for byte; a
// version is the znode's stat.version in decimal, and every compare-and-set
// or compare-and-delete passes it to ZooKeeper. Leader.Session and
// Member.Session are the znode's ephemeralOwner in hex ("0x...", as
// ZooKeeper's logs print session ids).
//
// One difference from Patroni: Patroni writes "{}" to sync when it turns
// synchronous replication off (its ZooKeeper code never deletes it); here
// CompareAndDelete deletes the znode, as the custos contract says. Both
// read as "no sync state".
//
// # TTL
//
// The session timeout asked of the server is the TTL, so the keys of a
// process that dies (or loses the network) disappear once the server
// expires its session. But a live client pings in the background and its
// session would keep the keys forever, while the contract wants them gone
// once TTL has passed without RenewLeader or TouchMember. So the backend
// keeps a renewal deadline: AcquireLeader, RenewLeader, TakeLeader and
// TouchMember push it to now+TTL, and when it passes the backend closes the
// session itself; the server deletes its ephemeral znodes at once. The next
// call opens a new session. (A Watch on the closed session returns an
// error; the caller watches again.) SetTTL moves the deadline from the next
// renewal on; the server-side timeout of the live session cannot change, so
// it follows with the next session. The server bounds the timeout by its
// minSessionTimeout and maxSessionTimeout (by default 2 and 20 tickTimes).
//
// RenewLeader and TouchMember move a key that holds this member's name but
// lives on another session (a previous process of this member, whose
// session has not expired yet) to the current session with one multi
// transaction: delete at the version read, create ephemeral. Like Patroni's
// ownership fix-up this relies on the znode version, and ZooKeeper restarts
// versions at 0 when a znode is created again: a key deleted and created
// again by someone else between the read and the transaction cannot be
// told apart. The window is one round trip.
//
// # Reads and watches
//
// GetCluster makes one consistent read as far as ZooKeeper 3.8 allows, see
// its doc. Watch keeps one-shot watches armed (the pinned client has no
// persistent recursive watches), see its doc.
//
// # Errors and time limits
//
// Every call is bounded by the caller's context and by RetryTimeout; the
// client's calls take no context, so each runs on a goroutine of its own
// and the caller returns as soon as the context ends. An unreachable
// ensemble, a lost session and a missed retry timeout give errors wrapping
// dcs.ErrUnavailable. Reads start over on a new session when the session
// breaks; writes do not, their outcome is then unknown.
//
// # Large values
//
// The contract promises 1 MiB values. A request carrying one is larger
// than ZooKeeper's default jute.maxbuffer (1 MiB - 1), so servers must run
// with a larger one, e.g. -Djute.maxbuffer=4194304 (the test server does);
// the client accepts packets up to 4 MiB. Patroni's own values are far
// smaller.
//
// # Configuration
//
// The section [dcs.zookeeper] takes Patroni's keys: hosts (a list of
// host:port or one comma-separated string; the port defaults to 2181; a
// kazoo-style chroot suffix is refused, put it in the namespace), use_ssl,
// cacert, cert, key, key_password (legacy PEM-encrypted keys only), verify
// (default true), set_acls (principal = [READ|WRITE|CREATE|DELETE|ADMIN|ALL]:
// x509 ACLs set on every znode created) and auth_data (scheme = credential,
// added to every session; SASL is refused, the client cannot do it).
// Validate checks the shape only; certificate files are read by Configure.
package zookeeper
