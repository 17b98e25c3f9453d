// Package api is custos's REST API, wire-compatible with Patroni's (same
// paths, status codes and JSON; docs/restapi.md says where custos goes
// beyond Patroni or differs): the health checks HAProxy, Kubernetes
// probes and load balancers call,
// the read endpoints patronictl and peers use (/patroni, /cluster, /history,
// /config, /failsafe), /metrics with Patroni's metric names, and the
// mutating endpoints operators and patronictl use (POST /switchover,
// /failover, /restart, /reinitialize, /reload; DELETE /switchover,
// /restart; PATCH and PUT /config) with Patroni's bodies, status codes and
// messages.
//
// The read endpoints answer from the agent's cached state only: the
// controller publishes an immutable Snapshot after every HA cycle (Latest
// holds it behind an atomic pointer) and each request reads the newest one.
// They run no SQL, call no DCS and take no lock the HA loop holds. The
// mutating endpoints act through an Operator: they read the DCS afresh,
// write /failover and /config, ask the peers for their status and hand
// restarts and reinitializations to the HA loop, which decides them like
// everything else.
//
// The package owns the wire shape of the status document (Status) and of the
// cluster document (ClusterInfo); package api/client decodes them from custos
// and from Patroni 3.0.2 and 4.x.
//
// Routing follows Patroni: METHOD /<segment>/... goes to the handler for
// that method and first path segment when there is one; every other GET is a
// health check decided by substring match on the path, and HEAD and OPTIONS
// on any path run the same check but answer with a bare status line
// ("HTTP/1.0 200 OK\r\n\r\n") as HAProxy's httpchk expects. Unsafe methods
// (POST, PUT, PATCH, DELETE) pass the access checks first (allowlist,
// client certificate, basic auth; see requireAccess and docs/restapi.md).
package api
