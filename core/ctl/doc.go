// Package ctl is custosctl, the operator's command line (cobra commands and
// their output formats); cmd/custosctl only calls Main.
//
// custosctl reads the DCS the way patronictl does, but through the same DCS
// plugin binaries as the agent (core/plugins), so every DCS custos supports
// works here without client code of its own. The plugin is configured from
// an agent's TOML file (-c) or a DCS URL (-d), with a member name of its own
// (custosctl-<pid>). Actions go through the members' REST API (package
// api/client) with the [ctl] credentials, falling back to [restapi]'s, as
// patronictl's do; only edit-config, remove, and the fallbacks of
// switchover/failover/flush when no member answers, write to the DCS, and
// only to cluster-wide keys (with compare-and-set where Patroni uses it).
//
// Commands, with patronictl's names, options, questions and messages:
//
//   - list, topology: Patroni 3.0.2's `patronictl list` table (Member,
//     Host, Role, State, TL, Lag in MB; -e adds Pending restart, Scheduled
//     restart and Tags) as pretty, tsv, json or yaml, once or watching;
//     topology shows the replicatefrom tree;
//   - switchover, failover: POST /switchover or /failover to the leader (the
//     candidate without a leader), /failover in the DCS when no answer;
//   - restart, reload, reinit, flush: per-member POST or DELETE, one
//     "Success:"/"Failed:" line each; flush switchover clears /failover
//     itself when no member answers;
//   - pause, resume: PATCH /config {"pause": ...}, --wait on the member keys;
//   - edit-config, show-config: the /config value as PyYAML writes it, a
//     unified diff, validation with the agent's own rules, a
//     compare-and-set write;
//   - history, query, dsn, remove, version.
//
// The throwaway demo cluster (`make demo`) is a binary of its own,
// custos-demo (module demo), so custosctl links no etcd server.
//
// Questions read standard input: answers may be piped in, and a closed or
// empty stdin fails the command with the question it could not ask, so a
// script without --force never hangs waiting for a terminal. A command
// whose per-member lines already say what failed exits with status 1
// without an extra "Error:" line.
//
// Commands take their DCS backends, REST client, clock and stdin from the
// session (see session), so tests run them against an in-memory DCS and
// httptest members.
package ctl
